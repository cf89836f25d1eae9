//! Loading the committed clean datasets into a real PostgreSQL (started by the test kit)
//! through the lead's migrations: the second load writes nothing and leaves the same rows.

use std::path::Path;

use proact_dataprep::load::{connect, load_dir};

#[tokio::test]
async fn loading_twice_leaves_the_same_rows() {
    let pg = proact_testkit::Postgres::start()
        .await
        .expect("start PostgreSQL (the test kit names the package if it is missing)");
    let mut client = connect(&pg.url()).await.unwrap();
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data");

    let first = load_dir(&mut client, &data).await.unwrap();
    let counts: Vec<(&str, i64)> = first.iter().map(|s| (s.table, s.table_rows)).collect();
    assert_eq!(counts.len(), 3);
    for s in &first {
        assert_eq!(s.table_rows as usize, s.rows, "{s:?}");
        assert_eq!(s.written as usize, s.rows, "{s:?}");
    }

    let second = load_dir(&mut client, &data).await.unwrap();
    for (a, b) in first.iter().zip(&second) {
        assert_eq!(a.table_rows, b.table_rows, "{b:?}");
        assert_eq!(b.written, 0, "re-loading changed rows of {}", b.table);
    }

    // Spot-check types survived: timestamps, the flagged RPN, a float.
    let row = client
        .query_one("SELECT count(*) FILTER (WHERE rpn_stated_mismatch IS NOT NULL), min(rpn), max(rpn) FROM amdec", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 1);
    assert!(row.get::<_, i32>(1) > 0);
    let corrective: i64 = client
        .query_one(
            "SELECT count(*) FROM gmao_interventions WHERE intervention_type = 'corrective' AND ended_at > started_at",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(corrective > 100, "{corrective}");
}

//! The planning desk (the current week's inputs and plan, shared by gRPC and the JSON API)
//! and gRPC `Planning` over it. Conversions to and from the `proact.v1` messages are here;
//! errors become statuses in one place, `lib.rs`.

use std::sync::Arc;

use chrono::NaiveDate;
use futures::future::BoxFuture;
use proact_proto::v1::planning_server::Planning;
use proact_proto::v1::{
    AddOrderRequest, ExplainRequest, Explanation as PbExplanation, OrderPriority, PinRequest, PlanAssignment,
    PlanHorizonRequest, PlanMove, PlanOrder, PlanProblem, PlanResult, PlanTechnician, TechnicianLoad as PbLoad,
};
use tokio::sync::Mutex;
use tonic::{Request, Response, Status};

use crate::model::{Order, PlanInput, Priority, Technician, Week};
use crate::{Assignment, Explanation, Plan, PlanningError};

/// Where the desk finds a week's technicians and orders when a request brings none (the
/// data folder, or the database through `proact_store::planning`).
pub type Loader = Arc<dyn Fn(Week) -> BoxFuture<'static, Result<PlanInput, PlanningError>> + Send + Sync>;

/// The current plan and what it was made from. One per service; requests are serialised so
/// a pin and a new order never re-plan from the same old plan.
pub struct Desk {
    loader: Option<Loader>,
    current: Mutex<Option<(PlanInput, Plan)>>,
}

impl Desk {
    pub fn new(loader: Option<Loader>) -> Arc<Desk> {
        Arc::new(Desk { loader, current: Mutex::new(None) })
    }

    /// Plans a week. Orders or technicians left empty come from the loader.
    pub async fn plan_week(
        &self,
        week: Week,
        orders: Vec<Order>,
        technicians: Vec<Technician>,
    ) -> Result<Plan, PlanningError> {
        let mut input = PlanInput { week, technicians, orders, travel: Vec::new() };
        if input.orders.is_empty() || input.technicians.is_empty() {
            let loader = self.loader.as_ref().ok_or_else(|| PlanningError::Invalid {
                what: "request".into(),
                reason: "give orders and technicians: this service has no data source".into(),
            })?;
            let loaded = loader(week).await?;
            if input.orders.is_empty() {
                input.orders = loaded.orders;
                input.travel = loaded.travel;
            }
            if input.technicians.is_empty() {
                input.technicians = loaded.technicians;
            }
        }
        let (input, plan) = off_the_runtime(move || crate::plan(&input).map(|plan| (input, plan))).await?;
        *self.current.lock().await = Some((input, plan.clone()));
        Ok(plan)
    }

    pub async fn current(&self) -> Result<Plan, PlanningError> {
        self.current.lock().await.as_ref().map(|(_, p)| p.clone()).ok_or(PlanningError::NoPlan)
    }

    /// The current plan with the orders it was made from (priority, equipment, alert: what
    /// the planning view shows on each bar).
    pub async fn current_with_orders(&self) -> Result<(Plan, Vec<Order>), PlanningError> {
        let current = self.current.lock().await;
        let (input, plan) = current.as_ref().ok_or(PlanningError::NoPlan)?;
        Ok((plan.clone(), input.orders.clone()))
    }

    pub async fn explain(&self, order_id: &str) -> Result<Explanation, PlanningError> {
        let current = self.current.lock().await;
        let (input, plan) = current.as_ref().ok_or(PlanningError::NoPlan)?;
        crate::explain(input, plan, order_id)
    }

    pub async fn pin(&self, order_id: &str, technician: &str, day: Option<NaiveDate>) -> Result<Plan, PlanningError> {
        let mut current = self.current.lock().await;
        let (input, plan) = current.clone().ok_or(PlanningError::NoPlan)?;
        let (order_id, technician) = (order_id.to_string(), technician.to_string());
        let next = off_the_runtime(move || crate::pin(&input, &plan, &order_id, &technician, day)).await?;
        let plan = next.1.clone();
        *current = Some(next);
        Ok(plan)
    }

    pub async fn add_order(&self, order: Order) -> Result<Plan, PlanningError> {
        let mut current = self.current.lock().await;
        let (input, plan) = current.clone().ok_or(PlanningError::NoPlan)?;
        let next = off_the_runtime(move || crate::add_order(&input, &plan, order)).await?;
        let plan = next.1.clone();
        *current = Some(next);
        Ok(plan)
    }

    /// A new urgent order (a critical work order just created): re-plans the affected days
    /// of the current plan. With no plan yet, or one of a week that ends before the order's
    /// release, its week is planned from the loader first, without the order, so the plan
    /// still says what the order moved. An order the plan already has is left as planned.
    pub async fn urgent(&self, order: Order) -> Result<Plan, PlanningError> {
        let mut current = self.current.lock().await;
        let release = order.release.unwrap_or_else(|| chrono::Utc::now().date_naive());
        let usable = current.as_ref().is_some_and(|(input, _)| input.week.days().last().is_some_and(|d| release <= *d));
        if !usable {
            let loader = self.loader.as_ref().ok_or(PlanningError::NoPlan)?;
            let mut input = loader(Week::of(release)).await?;
            input.orders.retain(|o| o.id != order.id);
            *current = Some(off_the_runtime(move || crate::plan(&input).map(|plan| (input, plan))).await?);
        }
        let (input, plan) = current.clone().ok_or(PlanningError::NoPlan)?;
        if input.orders.iter().any(|o| o.id == order.id) {
            return Ok(plan);
        }
        let next = off_the_runtime(move || crate::add_order(&input, &plan, order)).await?;
        let plan = next.1.clone();
        *current = Some(next);
        Ok(plan)
    }
}

/// Runs a plan or re-plan on tokio's blocking pool: it is CPU work of up to the search
/// budget (see `crate::solve`), which would hold up the async tasks of a worker thread.
async fn off_the_runtime<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, PlanningError> + Send + 'static,
) -> Result<T, PlanningError> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => Err(PlanningError::Solver(format!("planning task stopped: {e}"))),
    }
}

/// gRPC `Planning` over a [`Desk`].
pub struct PlanningService {
    pub desk: Arc<Desk>,
}

#[tonic::async_trait]
impl Planning for PlanningService {
    async fn plan_horizon(&self, request: Request<PlanHorizonRequest>) -> Result<Response<PlanResult>, Status> {
        let r = request.into_inner();
        let week: Week = r.week.parse()?;
        let orders = r.orders.into_iter().map(order_from_pb).collect::<Result<Vec<_>, _>>()?;
        let technicians = r.technicians.into_iter().map(technician_from_pb).collect::<Result<Vec<_>, _>>()?;
        Ok(Response::new(plan_to_pb(&self.desk.plan_week(week, orders, technicians).await?)))
    }

    async fn explain(&self, request: Request<ExplainRequest>) -> Result<Response<PbExplanation>, Status> {
        let e = self.desk.explain(&request.into_inner().order_id).await?;
        Ok(Response::new(PbExplanation {
            order_id: e.order_id,
            text: e.text,
            assignments: e.assignments.iter().map(assignment_to_pb).collect(),
            alternatives: e.alternatives,
        }))
    }

    async fn pin(&self, request: Request<PinRequest>) -> Result<Response<PlanResult>, Status> {
        let r = request.into_inner();
        let day = date("day", &r.day)?;
        Ok(Response::new(plan_to_pb(&self.desk.pin(&r.order_id, &r.technician_id, day).await?)))
    }

    async fn add_order(&self, request: Request<AddOrderRequest>) -> Result<Response<PlanResult>, Status> {
        let order = request.into_inner().order.ok_or_else(|| Status::invalid_argument("`order` is missing"))?;
        Ok(Response::new(plan_to_pb(&self.desk.add_order(order_from_pb(order)?).await?)))
    }
}

fn date(field: &str, v: &str) -> Result<Option<NaiveDate>, PlanningError> {
    if v.is_empty() {
        return Ok(None);
    }
    NaiveDate::parse_from_str(v, "%Y-%m-%d").map(Some).map_err(|_| PlanningError::Invalid {
        what: format!("field `{field}`"),
        reason: format!("`{v}` is not a date (YYYY-MM-DD)"),
    })
}

fn some(v: String) -> Option<String> {
    Some(v).filter(|v| !v.is_empty())
}

pub fn order_from_pb(o: PlanOrder) -> Result<Order, PlanningError> {
    let priority = match OrderPriority::try_from(o.priority) {
        Ok(OrderPriority::Critical) => Priority::Critical,
        Ok(OrderPriority::High) => Priority::High,
        Ok(OrderPriority::Low) => Priority::Low,
        Ok(OrderPriority::Medium | OrderPriority::Unspecified) => Priority::Medium,
        Err(_) => {
            return Err(PlanningError::Invalid {
                what: format!("order {}", o.id),
                reason: format!("unknown priority {}", o.priority),
            })
        }
    };
    Ok(Order {
        release: date("release", &o.release)?,
        deadline: date("deadline", &o.deadline)?,
        pinned_day: date("pinned_day", &o.pinned_day)?,
        current_day: date("current_day", &o.current_day)?,
        id: o.id,
        equipement_id: o.equipement_id,
        failure_mode_code: o.failure_mode_code,
        skill: o.skill,
        priority,
        estimated_hours: o.estimated_hours,
        crew: o.crew.max(1),
        pinned_technician: some(o.pinned_technician),
        started: o.started,
        announced: o.announced,
        current_technician: some(o.current_technician),
        site: some(o.site),
        alert_id: some(o.alert_id),
        description: String::new(),
    })
}

pub fn technician_from_pb(t: PlanTechnician) -> Result<Technician, PlanningError> {
    Ok(Technician {
        absent_days: t
            .absent_days
            .iter()
            .map(|d| {
                date("absent_days", d)?.ok_or_else(|| PlanningError::Invalid {
                    what: format!("technician {}", t.id),
                    reason: "empty absent day".into(),
                })
            })
            .collect::<Result<_, _>>()?,
        id: t.id,
        name: t.name,
        skills: t.skills,
        daily_hours: t.daily_hours,
        day_hours: Default::default(),
    })
}

fn assignment_to_pb(a: &Assignment) -> PlanAssignment {
    PlanAssignment {
        order_id: a.order_id.clone(),
        technician_id: a.technician_id.clone(),
        day: a.day.to_string(),
        hours: a.hours,
        lateness_days: a.lateness_days as f64,
        pinned: a.pinned,
        travel_hours: a.travel_hours,
    }
}

pub fn plan_to_pb(p: &Plan) -> PlanResult {
    PlanResult {
        week: p.week.to_string(),
        days: p.days.iter().map(|d| d.to_string()).collect(),
        assignments: p.assignments.iter().map(assignment_to_pb).collect(),
        unplanned: p.unplanned.clone(),
        problems: p
            .issues
            .iter()
            .map(|i| PlanProblem {
                code: i.code.as_str().to_string(),
                order_id: i.order_id.clone(),
                message: i.message.clone(),
            })
            .collect(),
        loads: p
            .loads
            .iter()
            .map(|l| PbLoad {
                technician_id: l.technician_id.clone(),
                planned_hours: l.planned_hours,
                capacity_hours: l.capacity_hours,
                day_hours: l.day_hours.clone(),
                day_capacity: l.day_capacity.clone(),
            })
            .collect(),
        weighted_lateness: p.weighted_lateness,
        load_spread_pct: p.load_spread_pct,
        handovers: p.handovers,
        moves: p
            .moves
            .iter()
            .map(|m| PlanMove {
                order_id: m.order_id.clone(),
                from_technician: m.from_technician.clone(),
                from_day: m.from_day.to_string(),
                to_technician: m.to_technician.clone().unwrap_or_default(),
                to_day: m.to_day.map(|d| d.to_string()).unwrap_or_default(),
                reason: m.reason.clone(),
            })
            .collect(),
        trigger_alert_id: p.trigger_alert_id.clone().unwrap_or_default(),
    }
}

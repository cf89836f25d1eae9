//! Provisioning a device for a broker that binds each MQTT user to its own topic: the
//! shipped ACL (`deploy/docker/mosquitto-acl.conf`) lets a user write
//! `sensors/<its user name>/telemetry` only, so a device's user name is its `equipement_id`
//! and a stolen or buggy device cannot publish as another. This adds the device's
//! credentials to Mosquitto's password file (through Mosquitto's own `mosquitto_passwd`, so
//! the hash format stays the broker's) and its id to ingest's allow-list file.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::validate::valid_id;

/// Why a device could not be provisioned.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error("equipement_id {0:?} is not 1-64 of A-Z a-z 0-9 . _ - (it becomes the MQTT user name and topic)")]
    InvalidId(String),
    #[error("cannot run {tool}: {detail} (install Mosquitto's tools: apt-get install mosquitto)")]
    Tool { tool: String, detail: String },
    #[error("mosquitto_passwd refused {file}: {detail}")]
    Passwd { file: PathBuf, detail: String },
    #[error("allow-list {file}: {detail}")]
    Allowlist { file: PathBuf, detail: String },
}

/// What a device is given: its broker credentials and the one topic it may publish to.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Device {
    pub equipement_id: String,
    pub username: String,
    pub password: String,
    pub topic: String,
}

/// Adds (or, for a known id, replaces the password of) device `id` in the Mosquitto
/// password file `passwd_file` (created if missing), and its id to `allowlist` (created if
/// missing; left alone if the id is already listed). The broker reads its password file at
/// start and on SIGHUP.
pub fn provision(
    id: &str,
    passwd_file: &Path,
    allowlist: Option<&Path>,
    mosquitto_passwd: &Path,
) -> Result<Device, ProvisionError> {
    if !valid_id(id) {
        return Err(ProvisionError::InvalidId(id.to_string()));
    }
    // 122 random bits from the operating system's generator, as 32 hex characters.
    let password = uuid::Uuid::new_v4().simple().to_string();
    let mut cmd = Command::new(mosquitto_passwd);
    if !passwd_file.exists() {
        cmd.arg("-c");
    }
    let out =
        cmd.arg("-b").arg(passwd_file).arg(id).arg(&password).output().map_err(|e| ProvisionError::Tool {
            tool: mosquitto_passwd.display().to_string(),
            detail: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(ProvisionError::Passwd {
            file: passwd_file.to_path_buf(),
            detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    if let Some(file) = allowlist {
        add_to_allowlist(file, id)
            .map_err(|e| ProvisionError::Allowlist { file: file.to_path_buf(), detail: e.to_string() })?;
    }
    Ok(Device {
        equipement_id: id.to_string(),
        username: id.to_string(),
        password,
        topic: format!("sensors/{id}/telemetry"),
    })
}

fn add_to_allowlist(file: &Path, id: &str) -> std::io::Result<()> {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e),
    };
    if text.lines().any(|l| l.trim() == id) {
        return Ok(());
    }
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(file)?;
    if !text.is_empty() && !text.ends_with('\n') {
        writeln!(f)?;
    }
    writeln!(f, "{id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowlist_gains_the_id_once() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("allow.txt");
        std::fs::write(&f, "# known equipment\nPUMP-01").unwrap();
        add_to_allowlist(&f, "PUMP-02").unwrap();
        add_to_allowlist(&f, "PUMP-02").unwrap();
        add_to_allowlist(&f, "PUMP-01").unwrap();
        assert_eq!(std::fs::read_to_string(&f).unwrap(), "# known equipment\nPUMP-01\nPUMP-02\n");
    }

    #[test]
    fn an_id_that_cannot_be_a_topic_is_refused_before_anything_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let passwd = dir.path().join("passwd");
        let e = provision("a/b", &passwd, None, Path::new("mosquitto_passwd")).unwrap_err();
        assert!(matches!(e, ProvisionError::InvalidId(_)), "{e}");
        assert!(!passwd.exists());
    }
}

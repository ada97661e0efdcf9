//! `db-restart`: `pg_ctl stop -m fast|immediate` inside a PostgreSQL container; the
//! image's supervisor (its entrypoint) starts postgres again.

use std::any::Any;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{argv, exec_ok, Effect, Fault, FaultPlan, Injected, PlanCtx, RawKind};
use crate::field::FieldError;
use crate::stack::{Capability, Stack, StackError};

/// PostgreSQL shutdown modes for `db-restart`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DbRestartMode {
    /// Disconnect clients, checkpoint, restart.
    #[default]
    Fast,
    /// Abort without a checkpoint: crash recovery on start.
    Immediate,
}

impl DbRestartMode {
    /// The name `pg_ctl -m` takes.
    pub fn name(self) -> &'static str {
        match self {
            DbRestartMode::Fast => "fast",
            DbRestartMode::Immediate => "immediate",
        }
    }
}

/// `kind = "db-restart"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawDbRestart {
    /// Service name.
    pub target: String,
    /// Shutdown mode: `fast` (default) or `immediate` (crash-like).
    pub mode: Option<DbRestartMode>,
    /// Data directory inside the container (default: the container's $PGDATA).
    pub pgdata: Option<String>,
}

/// `pg_ctl stop` inside the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbRestart {
    /// Shutdown mode.
    pub mode: DbRestartMode,
    /// Data directory (None: the container's $PGDATA).
    pub pgdata: Option<String>,
}

impl RawKind for RawDbRestart {
    fn plan(self, _: &PlanCtx) -> Result<FaultPlan, FieldError> {
        let plan = DbRestart {
            mode: self.mode.unwrap_or_default(),
            pgdata: self.pgdata,
        };
        Ok(FaultPlan::new(self.target, plan))
    }
}

#[async_trait]
impl Fault for DbRestart {
    fn name(&self) -> &'static str {
        "db-restart"
    }

    fn needs(&self) -> &'static [Capability] {
        &[Capability::Exec]
    }

    // The blocking pg_ctl call runs in the effect: the request itself is t_inject.
    async fn inject(&self, target: &str, _stack: &dyn Stack) -> Result<Injected, StackError> {
        Ok(Injected::new(
            format!("pg_ctl stop -m {} in {target}", self.mode.name()),
            Stopped {
                target: target.into(),
                plan: self.clone(),
            },
        ))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// Effect of `db-restart`: `pg_ctl stop -w` returned.
struct Stopped {
    target: String,
    plan: DbRestart,
}

#[async_trait]
impl Effect for Stopped {
    async fn wait(self: Box<Self>, stack: &dyn Stack) -> Result<String, StackError> {
        let mode = self.plan.mode.name();
        let mut cmd = argv(&["pg_ctl", "stop", "-m", mode, "-w"]);
        // Without -D, pg_ctl uses the container's $PGDATA.
        if let Some(dir) = &self.plan.pgdata {
            cmd.extend(argv(&["-D", dir]));
        }
        exec_ok(stack, &self.target, &cmd).await?;
        Ok(format!(
            "postgres stopped ({mode}) in {}; its supervisor starts it again",
            self.target
        ))
    }
}

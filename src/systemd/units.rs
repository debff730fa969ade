//! Unit states in one round trip (`ListUnitsByNames`), and the exit status
//! of a finished service (how `mode request` learns what `mode apply` said).

use mode_guards::{SliceProcess, SliceUnit, UnitState};
use zbus_systemd::systemd1::{ServiceProxy, UnitProxy};

use super::{Bus, SystemdError};

/// How a service's last run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceEnd {
    /// `success`, `exit-code`, `signal`, `core-dump`, `timeout`, ...
    pub result: String,
    /// `ExecMainCode`: 1 exited, 2 killed, 3 dumped core (0: never ran).
    pub code: i32,
    /// The exit status, or the signal number when killed.
    pub status: i32,
    /// When that run's main process started (monotonic µs).
    pub started_usec: u64,
    /// False when another run began while these were read: they may not
    /// be the run that served the job.
    pub settled: bool,
}

impl Bus {
    /// Load, active and sub state of each named unit, in the order asked.
    pub async fn unit_states(&self, names: &[String]) -> Result<Vec<UnitState>, SystemdError> {
        let listed = self
            .manager()
            .list_units_by_names(names.to_vec())
            .await
            .map_err(|e| SystemdError::call("ListUnitsByNames", e))?;
        Ok(listed
            .into_iter()
            .map(|u| UnitState {
                unit: u.0,
                load_state: u.2,
                active_state: u.3,
                sub_state: u.4,
            })
            .collect())
    }

    /// How the last run of a service ended: its `Result`, how its main
    /// process ended (`ExecMainCode`, `ExecMainStatus`) and when that run
    /// started (read before and after, so a run that began in between is
    /// noticed).
    pub async fn service_end(&self, unit: &str) -> Result<ServiceEnd, SystemdError> {
        let service: ServiceProxy = self.unit_proxy(unit).await?;
        let call = |what: &str, e| SystemdError::call(format!("{what} of {unit}"), e);
        let (before, _) = self.unit_run(unit).await?;
        let result = service.result().await.map_err(|e| call("Result", e))?;
        let code = service
            .exec_main_code()
            .await
            .map_err(|e| call("ExecMainCode", e))?;
        let status = service
            .exec_main_status()
            .await
            .map_err(|e| call("ExecMainStatus", e))?;
        let (after, activating) = self.unit_run(unit).await?;
        Ok(ServiceEnd {
            result,
            code,
            status,
            started_usec: after,
            settled: before == after && !activating,
        })
    }

    /// When the main process of `unit`'s last run started (monotonic µs, 0
    /// when it never ran) and whether it is activating now.
    pub async fn unit_run(&self, unit: &str) -> Result<(u64, bool), SystemdError> {
        let service: ServiceProxy = self.unit_proxy(unit).await?;
        let proxy: UnitProxy = self.unit_proxy(unit).await?;
        let call = |what: &str, e| SystemdError::call(format!("{what} of {unit}"), e);
        let started = service
            .exec_main_start_timestamp_monotonic()
            .await
            .map_err(|e| call("ExecMainStartTimestampMonotonic", e))?;
        let active = proxy
            .active_state()
            .await
            .map_err(|e| call("ActiveState", e))?;
        Ok((started, active == "activating"))
    }

    /// The id of the job `unit` has now, if any (a oneshot's start job
    /// lasts as long as its ExecStart).
    pub async fn unit_job(&self, unit: &str) -> Result<Option<u32>, SystemdError> {
        let proxy: UnitProxy = self.unit_proxy(unit).await?;
        let (id, _) = proxy
            .job()
            .await
            .map_err(|e| SystemdError::call(format!("Job of {unit}"), e))?;
        Ok((id != 0).then_some(id))
    }

    /// The units `unit` wants, requires or is bound to: its own workloads.
    pub async fn unit_dependencies(&self, unit: &str) -> Result<Vec<String>, SystemdError> {
        let proxy: UnitProxy = self.unit_proxy(unit).await?;
        let call = |what: &str, e| SystemdError::call(format!("{what} of {unit}"), e);
        let mut deps = proxy.wants().await.map_err(|e| call("Wants", e))?;
        deps.extend(proxy.requires().await.map_err(|e| call("Requires", e))?);
        deps.extend(proxy.binds_to().await.map_err(|e| call("BindsTo", e))?);
        Ok(deps)
    }

    /// The units running inside `slice`, each with its processes, from one
    /// `GetUnitProcesses` call on the slice (its whole cgroup subtree).
    pub async fn slice_units(&self, slice: &str) -> Result<Vec<SliceUnit>, SystemdError> {
        let processes = match self.manager().get_unit_processes(slice.to_string()).await {
            Ok(p) => p,
            // An inactive slice has no cgroup, and so no processes.
            Err(zbus::Error::MethodError(name, _, _)) if name.as_str().ends_with("NoSuchUnit") => {
                vec![]
            }
            Err(e) => return Err(SystemdError::call(format!("GetUnitProcesses {slice}"), e)),
        };
        let mut units: Vec<SliceUnit> = Vec::new();
        for (cgroup, pid, command) in processes {
            let unit = cgroup
                .rsplit('/')
                .find(|part| !part.is_empty() && part.contains('.'))
                .unwrap_or(slice)
                .to_string();
            let process = SliceProcess { pid, command };
            match units.iter_mut().find(|u| u.unit == unit) {
                Some(u) => u.processes.push(process),
                None => units.push(SliceUnit {
                    unit,
                    processes: vec![process],
                }),
            }
        }
        Ok(units)
    }

    /// Send `signal` to the main process of `unit` (systemd delivers it).
    pub async fn signal_main(&self, unit: &str, signal: i32) -> Result<(), SystemdError> {
        self.manager()
            .kill_unit(unit.to_string(), "main".into(), signal)
            .await
            .map_err(|e| SystemdError::call(format!("KillUnit {unit}"), e))
    }

    /// How long systemd lets `unit` stop before it sends SIGKILL.
    pub async fn stop_timeout(&self, unit: &str) -> Result<std::time::Duration, SystemdError> {
        let service: ServiceProxy = self.unit_proxy(unit).await?;
        let usec = service
            .timeout_stop_u_sec()
            .await
            .map_err(|e| SystemdError::call(format!("TimeoutStopUSec of {unit}"), e))?;
        Ok(std::time::Duration::from_micros(usec))
    }

    /// Why a service failed, in words: its `Result` (exit-code,
    /// start-limit-hit, timeout, ...). `None` for other unit types or when
    /// systemd cannot say.
    pub async fn failure_reason(&self, unit: &str) -> Option<String> {
        if !unit.ends_with(".service") {
            return None;
        }
        let service: ServiceProxy = self.unit_proxy(unit).await.ok()?;
        let result = service.result().await.ok()?;
        Some(match result.as_str() {
            "start-limit-hit" => {
                format!("start-limit-hit: started too often; `systemctl reset-failed {unit}`")
            }
            other => format!("result {other}"),
        })
    }
}

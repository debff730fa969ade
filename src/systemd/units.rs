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

#[cfg(test)]
impl ServiceEnd {
    /// A settled run that ended with `code`/`status` and systemd's `result`.
    pub fn ended(code: i32, status: i32, result: &str) -> Self {
        Self {
            result: result.into(),
            code,
            status,
            started_usec: 42,
            settled: true,
        }
    }
}

impl Bus {
    /// Load, active and sub state of each named unit, in the order asked.
    /// systemd answers one entry per name, in order, under the unit's own
    /// name: an alias (`display-manager.service`) comes back as the unit it
    /// names (`greetd.service`), so each answer is paired with its question.
    pub async fn unit_states(&self, names: &[String]) -> Result<Vec<UnitState>, SystemdError> {
        let listed = self
            .manager()
            .list_units_by_names(names.to_vec())
            .await
            .map_err(|e| SystemdError::call("ListUnitsByNames", e))?;
        if listed.len() != names.len() {
            return Err(SystemdError::call(
                "ListUnitsByNames",
                format!("asked for {} units, got {}", names.len(), listed.len()),
            ));
        }
        Ok(names
            .iter()
            .zip(listed)
            .map(|(name, u)| UnitState {
                unit: name.clone(),
                id: u.0,
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

    /// A service's `Type` (simple, exec, notify, oneshot, ...), when systemd says.
    pub async fn service_type(&self, unit: &str) -> Option<String> {
        let service: ServiceProxy = self.unit_proxy(unit).await.ok()?;
        service.type_property().await.ok()
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

/// Units watched for changes of their active state (see `Bus::watch_units`).
/// A task drains systemd's signals as they come, so a burst of them (a
/// transition changes every unit) never fills the connection's queue and
/// stalls the method calls made meanwhile on the same connection.
pub struct UnitWatch {
    changes: tokio::sync::mpsc::UnboundedReceiver<(String, String)>,
    _drain: tokio::task::JoinHandle<()>,
}

impl UnitWatch {
    fn new(
        mut stream: zbus::MessageStream,
        paths: std::collections::HashMap<String, String>,
    ) -> Self {
        let (tx, changes) = tokio::sync::mpsc::unbounded_channel();
        let drain = tokio::spawn(async move {
            use futures_util::StreamExt;
            while let Some(msg) = stream.next().await {
                let Ok(msg) = msg else { continue };
                let header = msg.header();
                let Some(unit) = header.path().and_then(|p| paths.get(p.as_str())) else {
                    continue;
                };
                type Changed = (
                    String,
                    std::collections::HashMap<String, zbus::OwnedVariant>,
                    Vec<String>,
                );
                let Ok((_, changed, _)) = msg.body().deserialize::<Changed>() else {
                    continue;
                };
                let state = changed
                    .get("ActiveState")
                    .and_then(|v| v.try_clone().ok())
                    .and_then(|v| String::try_from(v).ok());
                if let Some(state) = state {
                    if tx.send((unit.clone(), state)).is_err() {
                        break;
                    }
                }
            }
        });
        Self {
            changes,
            _drain: drain,
        }
    }

    /// The next watched unit seen leaving `active` (or `reloading`), with
    /// the state it went to; `None` if the bus closed.
    pub async fn next_exit(&mut self) -> Option<(String, String)> {
        loop {
            let (unit, state) = self.next_change().await?;
            if !matches!(state.as_str(), "active" | "reloading") {
                return Some((unit, state));
            }
        }
    }

    /// The next change of a watched unit's active state: the unit and the
    /// state it went to; `None` if the bus closed.
    pub async fn next_change(&mut self) -> Option<(String, String)> {
        self.changes.recv().await
    }
}

impl Drop for UnitWatch {
    fn drop(&mut self) {
        self._drain.abort();
    }
}

impl Bus {
    /// Watch `units` for changes of their active state, driven by systemd's
    /// `PropertiesChanged` signals (no polling). Subscribes first, then reads
    /// each unit's state once, so no change is missed: the returned states
    /// are as of after the subscription.
    pub async fn watch_units(
        &self,
        units: &[String],
    ) -> Result<(UnitWatch, Vec<UnitState>), SystemdError> {
        let rule = zbus::MatchRule::builder()
            .msg_type(zbus::message::Type::Signal)
            .sender("org.freedesktop.systemd1")
            .interface("org.freedesktop.DBus.Properties")
            .member("PropertiesChanged")
            .path_namespace("/org/freedesktop/systemd1/unit")
            .build()
            .map_err(|e| SystemdError::call("match rule", e))?;
        let stream = zbus::MessageStream::for_match_rule(rule, &self.conn(), None)
            .await
            .map_err(|e| SystemdError::call("subscribe to PropertiesChanged", e))?;
        self.subscribe().await?;
        let mut paths = std::collections::HashMap::new();
        for unit in units {
            let path = self
                .manager()
                .load_unit(unit.clone())
                .await
                .map_err(|e| SystemdError::call(format!("LoadUnit {unit}"), e))?;
            paths.insert(path.as_str().to_string(), unit.clone());
        }
        let states = self.unit_states(units).await?;
        Ok((UnitWatch::new(stream, paths), states))
    }
}

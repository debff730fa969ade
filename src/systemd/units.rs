//! Unit states in one round trip (`ListUnitsByNames`), and the exit status
//! of a finished service (how `mode request` learns what `mode apply` said).

use mode_guards::{SliceProcess, SliceUnit, UnitState};
use zbus_systemd::systemd1::{ServiceProxy, UnitProxy};

use super::{Bus, SystemdError};

impl Bus {
    /// Load, active and sub state of each named unit, in the order asked.
    /// systemd answers one entry per name, in order, under the unit's own
    /// name: an alias (`display-manager.service`) comes back as the unit it
    /// names (`greetd.service`), so each answer is paired with its question.
    pub async fn unit_states(&self, names: &[String]) -> Result<Vec<UnitState>, SystemdError> {
        let listed = self
            .manager
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

    /// `ExecMainStatus` of a service: the exit code of its main process.
    pub async fn service_exit_status(&self, unit: &str) -> Result<i32, SystemdError> {
        let service: ServiceProxy = self.unit_proxy(unit).await?;
        service
            .exec_main_status()
            .await
            .map_err(|e| SystemdError::call(format!("ExecMainStatus of {unit}"), e))
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
        let processes = match self.manager.get_unit_processes(slice.to_string()).await {
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
        self.manager
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

/// Units watched for leaving the active state (see `Bus::watch_active`).
pub struct ActiveWatch {
    stream: zbus::MessageStream,
    /// Each watched unit's object path, with the name it was asked by.
    paths: std::collections::HashMap<String, String>,
}

impl ActiveWatch {
    /// The next watched unit seen leaving `active` (or `reloading`), with
    /// the state it went to; `None` if the bus closed.
    pub async fn next_exit(&mut self) -> Option<(String, String)> {
        use futures_util::StreamExt;
        while let Some(msg) = self.stream.next().await {
            let Ok(msg) = msg else { continue };
            let header = msg.header();
            let Some(unit) = header.path().and_then(|p| self.paths.get(p.as_str())) else {
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
            if let Some(state) = state.filter(|s| !matches!(s.as_str(), "active" | "reloading")) {
                return Some((unit.clone(), state));
            }
        }
        None
    }
}

impl Bus {
    /// Watch `units` for leaving the active state, driven by systemd's
    /// `PropertiesChanged` signals (no polling). Subscribes first, then reads
    /// each unit's state once, so no change is missed: the returned states
    /// are as of after the subscription.
    pub async fn watch_active(
        &self,
        units: &[String],
    ) -> Result<(ActiveWatch, Vec<UnitState>), SystemdError> {
        let rule = zbus::MatchRule::builder()
            .msg_type(zbus::message::Type::Signal)
            .sender("org.freedesktop.systemd1")
            .interface("org.freedesktop.DBus.Properties")
            .member("PropertiesChanged")
            .path_namespace("/org/freedesktop/systemd1/unit")
            .build()
            .map_err(|e| SystemdError::call("match rule", e))?;
        let stream = zbus::MessageStream::for_match_rule(rule, &self.conn, None)
            .await
            .map_err(|e| SystemdError::call("subscribe to PropertiesChanged", e))?;
        self.subscribe().await?;
        let mut paths = std::collections::HashMap::new();
        for unit in units {
            let path = self
                .manager
                .load_unit(unit.clone())
                .await
                .map_err(|e| SystemdError::call(format!("LoadUnit {unit}"), e))?;
            paths.insert(path.as_str().to_string(), unit.clone());
        }
        let states = self.unit_states(units).await?;
        Ok((ActiveWatch { stream, paths }, states))
    }
}

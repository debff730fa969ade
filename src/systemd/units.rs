//! Unit states in one round trip (`ListUnitsByNames`), and the exit status
//! of a finished service (how `mode request` learns what `mode apply` said).

use mode_guards::UnitState;
use zbus_systemd::systemd1::{ServiceProxy, UnitProxy};

use super::{Bus, SystemdError};

impl Bus {
    /// Load, active and sub state of each named unit, in the order asked.
    pub async fn unit_states(&self, names: &[String]) -> Result<Vec<UnitState>, SystemdError> {
        let listed = self
            .manager
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

    /// `ExecMainStatus` of a service: the exit code of its main process.
    pub async fn service_exit_status(&self, unit: &str) -> Result<i32, SystemdError> {
        let path = self
            .manager
            .load_unit(unit.to_string())
            .await
            .map_err(|e| SystemdError::call(format!("LoadUnit {unit}"), e))?;
        let service = ServiceProxy::builder(&self.conn)
            .path(path)
            .cache_properties(zbus::proxy::CacheProperties::No)
            .build()
            .await
            .map_err(|e| SystemdError::call("ServiceProxy", e))?;
        service
            .exec_main_status()
            .await
            .map_err(|e| SystemdError::call(format!("ExecMainStatus of {unit}"), e))
    }

    /// The units `unit` wants, requires or is bound to: its own workloads.
    pub async fn unit_dependencies(&self, unit: &str) -> Result<Vec<String>, SystemdError> {
        let path = self
            .manager
            .load_unit(unit.to_string())
            .await
            .map_err(|e| SystemdError::call(format!("LoadUnit {unit}"), e))?;
        let proxy = UnitProxy::builder(&self.conn)
            .path(path)
            .cache_properties(zbus::proxy::CacheProperties::No)
            .build()
            .await
            .map_err(|e| SystemdError::call("UnitProxy", e))?;
        let call = |what: &str, e| SystemdError::call(format!("{what} of {unit}"), e);
        let mut deps = proxy.wants().await.map_err(|e| call("Wants", e))?;
        deps.extend(proxy.requires().await.map_err(|e| call("Requires", e))?);
        deps.extend(proxy.binds_to().await.map_err(|e| call("BindsTo", e))?);
        Ok(deps)
    }
}

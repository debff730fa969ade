//! logind sessions with the properties guards need, read as strings (newer
//! logind reports classes that strict enums reject), and the idle hints and
//! start times that `mode idle-check` judges an unattended desktop by.

use std::collections::HashMap;

use mode_guards::SessionInfo;
use zbus::names::InterfaceName;
use zbus::OwnedVariant;
use zbus_systemd::login1::ManagerProxy as LoginManagerProxy;

use super::{Bus, SystemdError};

fn string(all: &HashMap<String, OwnedVariant>, name: &str) -> String {
    all.get(name)
        .and_then(|v| v.try_clone().ok())
        .and_then(|v| String::try_from(v).ok())
        .unwrap_or_default()
}

fn number(all: &HashMap<String, OwnedVariant>, name: &str) -> u64 {
    all.get(name)
        .and_then(|v| u64::try_from(v).ok())
        .unwrap_or(0)
}

fn flag(all: &HashMap<String, OwnedVariant>, name: &str) -> bool {
    all.get(name)
        .and_then(|v| bool::try_from(v).ok())
        .unwrap_or(false)
}

impl Bus {
    /// Every logind session with the properties guards and idle automation
    /// read: one `ListSessions`, then one `GetAll` each.
    pub async fn sessions(&self) -> Result<Vec<SessionInfo>, SystemdError> {
        let login = LoginManagerProxy::builder(&self.conn())
            .cache_properties(zbus::proxy::CacheProperties::No)
            .build()
            .await
            .map_err(|e| SystemdError::call("login1", e))?;
        let listed = login
            .list_sessions()
            .await
            .map_err(|e| SystemdError::call("ListSessions", e))?;
        let mut sessions = Vec::with_capacity(listed.len());
        for (id, uid, user, seat, path) in listed {
            let proxy = zbus::fdo::PropertiesProxy::builder(&self.conn())
                .destination("org.freedesktop.login1")
                .path(path)
                .cache_properties(zbus::proxy::CacheProperties::No)
                .build()
                .await
                .map_err(|e| SystemdError::call("PropertiesProxy", e))?;
            let props = proxy
                .get_all(InterfaceName::from_static_str_unchecked(
                    "org.freedesktop.login1.Session",
                ))
                .await
                .map_err(|e| SystemdError::call(format!("GetAll session {id}"), e))?;
            let mut session = SessionInfo {
                session_type: string(&props, "Type"),
                class: string(&props, "Class"),
                state: string(&props, "State"),
                leader: props
                    .get("Leader")
                    .and_then(|v| u32::try_from(v).ok())
                    .unwrap_or(0),
                idle_hint: flag(&props, "IdleHint"),
                idle_since_usec: number(&props, "IdleSinceHint"),
                started_usec: number(&props, "Timestamp"),
                remote: flag(&props, "Remote"),
                processes: Vec::new(),
                id,
                uid,
                user,
                seat,
            };
            if session.needs_processes() {
                let scope = string(&props, "Scope");
                // A session whose scope is already gone has no processes.
                session.processes = self
                    .slice_units(&scope)
                    .await
                    .map(|units| units.into_iter().flat_map(|u| u.processes).collect())
                    .unwrap_or_default();
            }
            sessions.push(session);
        }
        Ok(sessions)
    }
}

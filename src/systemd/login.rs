//! logind sessions with the properties guards need, read as strings (newer
//! logind reports classes that strict enums reject).

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

impl Bus {
    pub async fn sessions(&self) -> Result<Vec<SessionInfo>, SystemdError> {
        let login = LoginManagerProxy::builder(&self.conn)
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
            let props = zbus::fdo::PropertiesProxy::builder(&self.conn)
                .destination("org.freedesktop.login1")
                .path(path)
                .cache_properties(zbus::proxy::CacheProperties::No)
                .build()
                .await
                .map_err(|e| SystemdError::call("PropertiesProxy", e))?;
            let all = props
                .get_all(InterfaceName::from_static_str_unchecked(
                    "org.freedesktop.login1.Session",
                ))
                .await
                .map_err(|e| SystemdError::call(format!("GetAll session {id}"), e))?;
            sessions.push(SessionInfo {
                session_type: string(&all, "Type"),
                class: string(&all, "Class"),
                state: string(&all, "State"),
                leader: all
                    .get("Leader")
                    .and_then(|v| u32::try_from(v).ok())
                    .unwrap_or(0),
                idle_hint: all
                    .get("IdleHint")
                    .and_then(|v| bool::try_from(v).ok())
                    .unwrap_or(false),
                id,
                uid,
                user,
                seat,
            });
        }
        Ok(sessions)
    }
}

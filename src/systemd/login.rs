//! logind sessions with the properties guards need, read as strings (newer
//! logind reports classes that strict enums reject), and the idle hints and
//! start times that `mode idle-check` judges an unattended desktop by.

use std::collections::HashMap;

use mode_guards::SessionInfo;
use serde::Serialize;
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

/// One logind session as idle automation sees it. Times are microseconds of
/// CLOCK_REALTIME, as logind reports them; 0 means "never set".
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SessionActivity {
    pub id: String,
    pub uid: u32,
    pub user: String,
    pub seat: String,
    #[serde(rename = "type")]
    pub session_type: String,
    pub class: String,
    pub state: String,
    pub idle_hint: bool,
    /// `IdleSinceHint`: when the idle hint last changed (0: never set).
    pub idle_since_usec: u64,
    /// `Timestamp`: when the session started.
    pub started_usec: u64,
}

/// A listed session: id, uid, user, seat and all its `Session` properties.
struct Listed {
    id: String,
    uid: u32,
    user: String,
    seat: String,
    props: HashMap<String, OwnedVariant>,
}

impl Bus {
    /// Every logind session with all its properties, one `GetAll` each.
    async fn listed_sessions(&self) -> Result<Vec<Listed>, SystemdError> {
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
            let props = props
                .get_all(InterfaceName::from_static_str_unchecked(
                    "org.freedesktop.login1.Session",
                ))
                .await
                .map_err(|e| SystemdError::call(format!("GetAll session {id}"), e))?;
            sessions.push(Listed {
                id,
                uid,
                user,
                seat,
                props,
            });
        }
        Ok(sessions)
    }

    pub async fn sessions(&self) -> Result<Vec<SessionInfo>, SystemdError> {
        Ok(self
            .listed_sessions()
            .await?
            .into_iter()
            .map(|s| SessionInfo {
                session_type: string(&s.props, "Type"),
                class: string(&s.props, "Class"),
                state: string(&s.props, "State"),
                leader: s
                    .props
                    .get("Leader")
                    .and_then(|v| u32::try_from(v).ok())
                    .unwrap_or(0),
                idle_hint: flag(&s.props, "IdleHint"),
                id: s.id,
                uid: s.uid,
                user: s.user,
                seat: s.seat,
            })
            .collect())
    }

    /// Every session with its idle hint, when that last changed and when the
    /// session started.
    pub async fn session_activity(&self) -> Result<Vec<SessionActivity>, SystemdError> {
        Ok(self
            .listed_sessions()
            .await?
            .into_iter()
            .map(|s| SessionActivity {
                session_type: string(&s.props, "Type"),
                class: string(&s.props, "Class"),
                state: string(&s.props, "State"),
                idle_hint: flag(&s.props, "IdleHint"),
                idle_since_usec: number(&s.props, "IdleSinceHint"),
                started_usec: number(&s.props, "Timestamp"),
                id: s.id,
                uid: s.uid,
                user: s.user,
                seat: s.seat,
            })
            .collect())
    }
}

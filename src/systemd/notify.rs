//! Desktop notifications through the session's notification service
//! (`org.freedesktop.Notifications.Notify` on the user's session bus). Only
//! `mode notify`, run by the user in their graphical session, uses it: root
//! never writes to a user's session bus.

use std::collections::HashMap;

use zbus::Connection;

use super::SystemdError;

/// The user's session bus, with the id of the last notification sent, so
/// each one replaces the one before (a switch is one bubble, not three).
pub struct Notifier {
    conn: Connection,
    last_id: u32,
}

impl Notifier {
    /// Connect to the session bus of `DBUS_SESSION_BUS_ADDRESS`.
    pub async fn connect() -> Result<Self, SystemdError> {
        let conn = Connection::session()
            .await
            .map_err(|e| SystemdError::Unreachable(format!("the session bus: {e}")))?;
        Ok(Self { conn, last_id: 0 })
    }

    /// Show `summary` and `body`; `urgent` for a refusal or a failure.
    pub async fn notify(
        &mut self,
        summary: &str,
        body: &str,
        urgent: bool,
    ) -> Result<(), SystemdError> {
        let hints: HashMap<&str, zbus::Variant> =
            HashMap::from([("urgency", zbus::Variant::U8(if urgent { 2 } else { 1 }))]);
        let reply = self
            .conn
            .call_method(
                Some("org.freedesktop.Notifications"),
                "/org/freedesktop/Notifications",
                Some("org.freedesktop.Notifications"),
                "Notify",
                &(
                    "mode",
                    self.last_id,
                    "",
                    summary,
                    body,
                    Vec::<&str>::new(),
                    hints,
                    -1i32,
                ),
            )
            .await
            .map_err(|e| SystemdError::call("Notify", e))?;
        self.last_id = reply
            .body()
            .deserialize::<u32>()
            .map_err(|e| SystemdError::call("Notify", e))?;
        Ok(())
    }
}

//! The only code that speaks D-Bus: a thin adapter over zbus / zbus_systemd
//! for what the controller needs from systemd (jobs, unit states, slice
//! properties) and logind (sessions). Everything above it sees plain types.

mod jobs;
mod login;
mod notify;
mod slices;
mod units;

use std::path::Path;

use zbus::Connection;
use zbus_systemd::systemd1::{JobRemovedStream, ManagerProxy};

pub use jobs::JobKind;
pub use notify::Notifier;
pub use units::ServiceEnd;

#[derive(Debug, thiserror::Error)]
pub enum SystemdError {
    #[error("systemd is not the init system here (/run/systemd/system is missing), so modes cannot be switched; run mode on a machine booted with systemd")]
    NotInit,
    #[error("cannot reach the system D-Bus ({0}); is dbus.service running?")]
    Unreachable(String),
    #[error("D-Bus call {call} failed: {detail}")]
    Call { call: String, detail: String },
    #[error(
        "{unit} cannot be started: {detail}; install the units (docs/install.md) or unmask it"
    )]
    NotInstalled { unit: String, detail: String },
    #[error("{unit}: no job result within {secs} s")]
    JobTimeout { unit: String, secs: u64 },
    /// systemd (or polkit, which systemd asked) would not let this caller
    /// start the unit: `AccessDenied` or `InteractiveAuthorizationRequired`.
    #[error("systemd refused to start {unit} for this user: {detail}")]
    Denied { unit: String, detail: String },
}

impl SystemdError {
    fn call(call: impl Into<String>, e: impl std::fmt::Display) -> Self {
        SystemdError::Call {
            call: call.into(),
            detail: e.to_string(),
        }
    }
}

/// A connection to the system bus with systemd's manager at hand.
pub struct Bus {
    /// Replaced when the bus went away and came back (`reconnect`).
    link: std::sync::Mutex<Link>,
    /// `JobRemoved` signals, subscribed on the first job and kept, so no
    /// signal is missed between one job and the next.
    job_removed: tokio::sync::Mutex<Option<JobRemovedStream>>,
}

#[derive(Clone)]
struct Link {
    conn: Connection,
    manager: ManagerProxy<'static>,
}

async fn link() -> Result<Link, SystemdError> {
    let conn = Connection::system()
        .await
        .map_err(|e| SystemdError::Unreachable(e.to_string()))?;
    let manager = ManagerProxy::builder(&conn)
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await
        .map_err(|e| SystemdError::Unreachable(e.to_string()))?;
    Ok(Link { conn, manager })
}

impl Bus {
    /// Connect to the system bus, after checking that systemd is init.
    pub async fn connect() -> Result<Self, SystemdError> {
        if !Path::new("/run/systemd/system").exists() {
            return Err(SystemdError::NotInit);
        }
        Ok(Self {
            link: std::sync::Mutex::new(link().await?),
            job_removed: tokio::sync::Mutex::new(None),
        })
    }

    fn link(&self) -> Link {
        match self.link.lock() {
            Ok(l) => l.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn conn(&self) -> Connection {
        self.link().conn
    }

    fn manager(&self) -> ManagerProxy<'static> {
        self.link().manager
    }

    /// Whether systemd answers on this connection (within two seconds).
    pub async fn alive(&self) -> bool {
        let manager = self.manager();
        matches!(
            tokio::time::timeout(std::time::Duration::from_secs(2), manager.version()).await,
            Ok(Ok(_))
        )
    }

    /// The bus went away: connect again, trying for up to `within`; how
    /// long it took. Signals of the old connection are dropped with it.
    pub async fn reconnect(
        &self,
        within: std::time::Duration,
    ) -> Result<std::time::Duration, SystemdError> {
        let deadline = mode_guards::Deadline::after(within);
        let started = std::time::Instant::now();
        loop {
            match link().await {
                Ok(new) => {
                    let probe = new.manager.clone();
                    let answers = matches!(
                        tokio::time::timeout(std::time::Duration::from_secs(2), probe.version())
                            .await,
                        Ok(Ok(_))
                    );
                    if answers {
                        *self.job_removed.lock().await = None;
                        match self.link.lock() {
                            Ok(mut l) => *l = new,
                            Err(poisoned) => *poisoned.into_inner() = new,
                        }
                        return Ok(started.elapsed());
                    }
                }
                Err(e) if deadline.passed() => return Err(e),
                Err(_) => {}
            }
            if deadline.passed() {
                return Err(SystemdError::Unreachable(format!(
                    "systemd did not answer for {} s",
                    within.as_secs()
                )));
            }
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        }
    }
}

impl Bus {
    /// Ask systemd to send its signals to this connection (once is enough:
    /// a second ask is answered `AlreadySubscribed`, which is fine).
    async fn subscribe(&self) -> Result<(), SystemdError> {
        match self.manager().subscribe().await {
            Ok(()) => Ok(()),
            Err(zbus::Error::MethodError(name, _, _))
                if name.as_str().ends_with(".AlreadySubscribed") =>
            {
                Ok(())
            }
            Err(e) => Err(SystemdError::call("Subscribe", e)),
        }
    }

    /// An uncached proxy of type `P` on the object of `unit` (loaded if it
    /// is not): one `LoadUnit` call, then whatever the caller asks.
    async fn unit_proxy<P>(&self, unit: &str) -> Result<P, SystemdError>
    where
        P: From<zbus::Proxy<'static>> + zbus::proxy::Defaults,
    {
        let path = self
            .manager()
            .load_unit(unit.to_string())
            .await
            .map_err(|e| SystemdError::call(format!("LoadUnit {unit}"), e))?;
        zbus::proxy::Builder::<P>::new(&self.conn())
            .destination("org.freedesktop.systemd1")
            .path(path)
            .cache_properties(zbus::proxy::CacheProperties::No)
            .build()
            .await
            .map_err(|e| SystemdError::call(format!("proxy for {unit}"), e))
    }
}

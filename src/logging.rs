//! Logs of transitions: to the journal (structured fields: transition, from,
//! to, guard, outcome) when its socket exists, else to stderr. Only commands
//! that change the machine log; queries stay quiet and fast.

use tracing_subscriber::layer::{Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

pub fn init_journal() {
    let journal = std::path::Path::new("/run/systemd/journal/socket")
        .exists()
        .then(|| tracing_journald::layer().ok())
        .flatten();
    let result = match journal {
        Some(layer) => tracing_subscriber::registry()
            .with(
                layer
                    .with_syslog_identifier("mode-controller".into())
                    .with_field_prefix(None),
            )
            .try_init(),
        None => tracing_subscriber::registry()
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_filter(tracing_subscriber::filter::LevelFilter::WARN),
            )
            .try_init(),
    };
    let _ = result;
}

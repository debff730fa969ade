//! Slice budgets at run time: `SetUnitProperties(runtime=true)` with every
//! budgeted property (unset ones reset to systemd's default), and a read-back
//! of the same properties for verification and `mode status`.

use std::collections::HashMap;

use zbus::names::InterfaceName;
use zbus::OwnedVariant;

use crate::config::{Bytes, CpuQuota, CpuSet, SliceBudget, Weight};

use super::{Bus, SystemdError};

/// systemd's "unset" for weights, quota and memory limits.
const UNSET: u64 = u64::MAX;

fn properties(b: &SliceBudget) -> Result<Vec<(String, OwnedVariant)>, SystemdError> {
    let mask = b
        .allowed_cpus
        .as_ref()
        .map(CpuSet::as_mask)
        .unwrap_or_default();
    let mask = OwnedVariant::try_from(zbus::Variant::from(mask))
        .map_err(|e| SystemdError::call("AllowedCPUs", e))?;
    Ok(vec![
        (
            "CPUWeight".into(),
            b.cpu_weight.map_or(UNSET, |w| w.0).into(),
        ),
        ("IOWeight".into(), b.io_weight.map_or(UNSET, |w| w.0).into()),
        (
            "CPUQuotaPerSecUSec".into(),
            b.cpu_quota.map_or(UNSET, |q| q.usec_per_sec).into(),
        ),
        (
            "MemoryHigh".into(),
            b.memory_high.map_or(UNSET, Bytes::as_dbus).into(),
        ),
        (
            "MemoryMax".into(),
            b.memory_max.map_or(UNSET, Bytes::as_dbus).into(),
        ),
        ("AllowedCPUs".into(), mask),
    ])
}

fn u64_prop(all: &HashMap<String, OwnedVariant>, name: &str) -> Option<u64> {
    all.get(name)
        .and_then(|v| u64::try_from(v).ok())
        .filter(|n| *n != UNSET)
}

fn budget_from(all: &HashMap<String, OwnedVariant>) -> SliceBudget {
    let bytes = |name| u64_prop(all, name).map(Bytes::Limit);
    let mask: Option<Vec<u8>> = all
        .get("AllowedCPUs")
        .and_then(|v| v.try_clone().ok())
        .and_then(|v| Vec::<u8>::try_from(v).ok());
    SliceBudget {
        cpu_weight: u64_prop(all, "CPUWeight").map(Weight),
        io_weight: u64_prop(all, "IOWeight").map(Weight),
        cpu_quota: u64_prop(all, "CPUQuotaPerSecUSec")
            .map(|usec_per_sec| CpuQuota { usec_per_sec }),
        memory_high: bytes("MemoryHigh"),
        memory_max: bytes("MemoryMax"),
        allowed_cpus: mask
            .filter(|m| m.iter().any(|b| *b != 0))
            .map(|m| CpuSet::from_mask(&m)),
    }
}

impl Bus {
    /// Apply `budget` to `slice` for this boot only.
    pub async fn set_slice_budget(
        &self,
        slice: &str,
        budget: &SliceBudget,
    ) -> Result<(), SystemdError> {
        self.manager()
            .set_unit_properties(slice.to_string(), true, properties(budget)?)
            .await
            .map_err(|e| SystemdError::call(format!("SetUnitProperties {slice}"), e))
    }

    /// Read back the budgeted properties of `slice`.
    pub async fn slice_budget(&self, slice: &str) -> Result<SliceBudget, SystemdError> {
        let props: zbus::fdo::PropertiesProxy = self.unit_proxy(slice).await?;
        let all = props
            .get_all(InterfaceName::from_static_str_unchecked(
                "org.freedesktop.systemd1.Slice",
            ))
            .await
            .map_err(|e| SystemdError::call(format!("GetAll {slice}"), e))?;
        Ok(budget_from(&all))
    }
}

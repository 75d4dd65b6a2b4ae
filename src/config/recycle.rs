//! `workers.recycle`, checked: replace a worker whose process tree uses
//! more than `memory`, or that has been ready longer than `age` (give or
//! take `jitter`, so a pool started at once does not recycle at once).
//! Absent: no recycling. `memory` at least 1MiB; `age` at least 1s (and,
//! as every duration, at most 24h); `jitter` 0% to 50%, 10% by default,
//! and only beside `age`.

use serde_saphyr::Spanned;

use super::Recycle;
use super::diagnostics::{Located, located};
use super::schema::RawRecycle;
use super::units::{Percent, Size};

/// `jitter` when `age` is set and `jitter` is not.
pub(crate) const DEFAULT_JITTER: Percent = Percent(10);

/// The largest `jitter`: beyond it, a worker could be recycled at a tiny
/// fraction of its age.
pub(crate) const MAX_JITTER: u32 = 50;

/// The smallest `memory`: below it no real process fits.
const MIN_MEMORY: Size = Size(1 << 20);

/// `workers.recycle`: `None` when absent or `null`.
pub(super) fn validate_recycle(
    recycle: Option<Spanned<RawRecycle>>,
) -> Result<Option<Recycle>, Located> {
    let Some(r) = recycle else {
        return Ok(None);
    };
    let RawRecycle {
        memory,
        age,
        jitter,
    } = &r.value;
    if let Some(m) = memory.as_ref().filter(|m| m.value < MIN_MEMORY) {
        return Err(located(
            m,
            "workers.recycle.memory",
            "must be at least 1MiB (a size such as 512MiB)",
        ));
    }
    if let Some(a) = age.as_ref().filter(|a| a.value.0.as_secs() < 1) {
        return Err(located(
            a,
            "workers.recycle.age",
            "must be at least 1s (a duration up to 24h, such as 24h)",
        ));
    }
    if let Some(j) = jitter {
        if j.value.0 > MAX_JITTER {
            return Err(located(
                j,
                "workers.recycle.jitter",
                format!("{} is out of range (0% to {MAX_JITTER}%)", j.value),
            ));
        }
        if age.is_none() {
            return Err(located(
                j,
                "workers.recycle.jitter",
                "spreads workers.recycle.age, which is not set (set age, or remove jitter)",
            ));
        }
    }
    if memory.is_none() && age.is_none() {
        return Err(located(
            &r,
            "workers.recycle",
            "sets neither memory nor age (set one of them, or remove recycle)",
        ));
    }
    Ok(Some(Recycle {
        memory: memory.as_ref().map(|m| m.value),
        age: age.as_ref().map(|a| a.value),
        jitter: age
            .as_ref()
            .map(|_| jitter.as_ref().map_or(DEFAULT_JITTER, |j| j.value)),
    }))
}

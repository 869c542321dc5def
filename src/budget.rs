//! The memory budget: how many bytes reading one file (or one data set) may allocate for
//! what the file declares. Readers check each declared size against the bytes the file
//! really holds and against the budget *before* allocating, so a hostile header that declares
//! a terabyte is refused with one line instead of aborting the process.
//!
//! The process-wide budget is [`MemoryBudget::current`]: the value set by
//! [`MemoryBudget::set_current`] (a command-line flag or an app setting), else the
//! `QUANTSCOPE_MEMORY_BUDGET` environment variable (e.g. `2G`, `512M`), else
//! [`MemoryBudget::DEFAULT_BYTES`]. A [`Ledger`] adds up what one load reserves.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};

/// The environment variable read when no budget was set explicitly.
pub const BUDGET_ENV: &str = "QUANTSCOPE_MEMORY_BUDGET";

/// The explicitly set budget in bytes; 0 = not set.
static CURRENT: AtomicU64 = AtomicU64::new(0);

/// A number of bytes that one load may allocate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryBudget {
    bytes: u64,
}

impl Default for MemoryBudget {
    fn default() -> Self {
        MemoryBudget {
            bytes: Self::DEFAULT_BYTES,
        }
    }
}

impl MemoryBudget {
    /// 8 GiB: room for the largest models Quantscope is meant for (a few hundred million
    /// parameters as f32) with their calibration data, and well below what would make a
    /// desktop machine swap itself to a halt.
    pub const DEFAULT_BYTES: u64 = 8 << 30;

    /// A budget of `bytes` (at least one byte).
    pub fn new(bytes: u64) -> Self {
        MemoryBudget {
            bytes: bytes.max(1),
        }
    }

    /// The budget in bytes.
    pub fn bytes(self) -> u64 {
        self.bytes
    }

    /// The process-wide budget: the one set by [`MemoryBudget::set_current`], else the
    /// `QUANTSCOPE_MEMORY_BUDGET` environment variable when it parses, else the default.
    pub fn current() -> Self {
        match CURRENT.load(Ordering::Relaxed) {
            0 => Self::from_env().ok().flatten().unwrap_or_default(),
            bytes => MemoryBudget { bytes },
        }
    }

    /// Sets the process-wide budget (see [`MemoryBudget::current`]).
    pub fn set_current(budget: MemoryBudget) {
        CURRENT.store(budget.bytes, Ordering::Relaxed);
    }

    /// The budget named by `QUANTSCOPE_MEMORY_BUDGET`: None when unset, an error text when
    /// it does not parse (so the command line can say so instead of ignoring it).
    pub fn from_env() -> std::result::Result<Option<Self>, String> {
        match std::env::var(BUDGET_ENV) {
            Ok(text) => text
                .parse()
                .map(Some)
                .map_err(|e| format!("{BUDGET_ENV}: {e}")),
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(_)) => Err(format!("{BUDGET_ENV} is not text")),
        }
    }

    /// Errors when one allocation of `bytes` for `what` exceeds the budget.
    pub fn check(self, bytes: u64, what: impl FnOnce() -> String) -> Result<()> {
        if bytes > self.bytes {
            return Err(Error::OverBudget {
                what: what(),
                needed: bytes,
                in_use: 0,
                budget: self.bytes,
            });
        }
        Ok(())
    }

    /// A ledger that adds up the reservations of one load against this budget.
    pub fn ledger(self) -> Ledger {
        Ledger {
            budget: self,
            used: 0,
            peak: 0,
        }
    }
}

impl fmt::Display for MemoryBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&bytes_text(self.bytes))
    }
}

impl FromStr for MemoryBudget {
    type Err = String;

    /// Parses `8G`, `1.5GiB`, `512M`, `300k`, `1000000` (plain bytes). Units are binary
    /// (K = 1024 bytes); an optional `B`/`iB` suffix is accepted.
    fn from_str(text: &str) -> std::result::Result<Self, String> {
        let t = text.trim();
        let lower = t.to_ascii_lowercase();
        let stripped = lower
            .strip_suffix("ib")
            .or_else(|| lower.strip_suffix('b'))
            .unwrap_or(&lower);
        let (number, scale) = match stripped.char_indices().last() {
            Some((i, 'k')) => (&stripped[..i], 1u64 << 10),
            Some((i, 'm')) => (&stripped[..i], 1 << 20),
            Some((i, 'g')) => (&stripped[..i], 1 << 30),
            Some((i, 't')) => (&stripped[..i], 1 << 40),
            _ => (stripped, 1),
        };
        let value: f64 = number
            .trim()
            .parse()
            .map_err(|_| format!("'{t}' is not a memory size (e.g. 8G, 512M, 1000000)"))?;
        let bytes = value * scale as f64;
        if !(bytes.is_finite() && bytes >= 1.0 && bytes < u64::MAX as f64) {
            return Err(format!(
                "'{t}' is not a usable memory size (from 1 byte to 16 EiB)"
            ));
        }
        Ok(MemoryBudget::new(bytes as u64))
    }
}

/// What one load has reserved against its budget.
#[derive(Debug, Clone)]
pub struct Ledger {
    budget: MemoryBudget,
    used: u64,
    peak: u64,
}

impl Ledger {
    /// Reserves `bytes` for `what` (named lazily, for the message), or errors, reserving
    /// nothing, when the total would exceed the budget.
    pub fn reserve(&mut self, bytes: u64, what: impl FnOnce() -> String) -> Result<()> {
        let total = self.used.saturating_add(bytes);
        if total > self.budget.bytes {
            return Err(Error::OverBudget {
                what: what(),
                needed: bytes,
                in_use: self.used,
                budget: self.budget.bytes,
            });
        }
        self.used = total;
        self.peak = self.peak.max(total);
        Ok(())
    }

    /// Gives back `bytes` reserved earlier (a temporary buffer that was freed).
    pub fn release(&mut self, bytes: u64) {
        self.used = self.used.saturating_sub(bytes);
    }

    /// Bytes reserved now.
    pub fn used(&self) -> u64 {
        self.used
    }

    /// The most bytes reserved at once.
    pub fn peak(&self) -> u64 {
        self.peak
    }

    /// The budget this ledger counts against.
    pub fn budget(&self) -> MemoryBudget {
        self.budget
    }
}

/// A byte count for messages: `131072 bytes`, `1.5 MiB`, `512 GiB`.
pub fn bytes_text(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} bytes");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    let digits = if value >= 100.0 || value.fract() == 0.0 {
        0
    } else {
        1
    };
    format!("{value:.digits$} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sizes_with_binary_units() {
        let parse = |t: &str| t.parse::<MemoryBudget>().map(MemoryBudget::bytes);
        assert_eq!(parse("8G"), Ok(8 << 30));
        assert_eq!(parse("1.5GiB"), Ok(3 << 29));
        assert_eq!(parse("512m"), Ok(512 << 20));
        assert_eq!(parse("300KB"), Ok(300 << 10));
        assert_eq!(parse(" 1000000 "), Ok(1_000_000));
        for bad in ["", "G", "-1G", "0", "lots", "1e30T", "NaN"] {
            assert!(parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn formats_byte_counts() {
        assert_eq!(bytes_text(131_072), "128 KiB");
        assert_eq!(bytes_text(1000), "1000 bytes");
        assert_eq!(bytes_text(1 << 39), "512 GiB");
        assert_eq!(bytes_text(3 << 29), "1.5 GiB");
        assert_eq!(bytes_text(u64::MAX), "16 EiB");
    }

    #[test]
    fn a_ledger_refuses_what_would_exceed_the_budget_and_keeps_its_total() {
        let mut ledger = MemoryBudget::new(1000).ledger();
        ledger.reserve(600, || "a".into()).unwrap();
        let err = ledger.reserve(500, || "array 'b'".into()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "array 'b' needs 500 bytes with 600 bytes already loaded, over the memory budget of \
             1000 bytes (QUANTSCOPE_MEMORY_BUDGET raises it)"
        );
        assert_eq!(ledger.used(), 600);
        ledger.release(600);
        ledger.reserve(1000, || "c".into()).unwrap();
        assert_eq!((ledger.used(), ledger.peak()), (1000, 1000));
        assert!(ledger.reserve(u64::MAX, || "d".into()).is_err());
    }

    #[test]
    fn one_allocation_is_checked_against_the_budget() {
        let budget = MemoryBudget::new(1 << 20);
        assert!(budget.check(1 << 20, String::new).is_ok());
        let err = budget.check(1 << 40, || "x.npy: array".into()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "x.npy: array needs 1 TiB, over the memory budget of 1 MiB (QUANTSCOPE_MEMORY_BUDGET raises it)"
        );
    }
}

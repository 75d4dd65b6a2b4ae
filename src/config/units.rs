//! Value types of the config file that YAML has no type for: durations
//! (`500ms`, `30s`, `1m30s`), sizes (`512MiB`), percentages (`10%`),
//! signal names (`SIGTERM`, `TERM`) and file modes (`"0660"`). Each parses from a string with an error that says what
//! is allowed, and prints back in the form it parses from, so `hawkey check`
//! shows a config that can be read again.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use nix::sys::signal::Signal;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A duration written with units: `250ms`, `30s`, `5m`, `1h`, `1m30s`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Span(pub(crate) Duration);

/// The longest duration any key accepts: one day. Larger values are almost
/// certainly a unit mistake (`30000s` meant as milliseconds).
pub(crate) const MAX_SPAN: Duration = Duration::from_secs(24 * 3600);

impl FromStr for Span {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        const ALLOWED: &str = "a number with a unit: ms, s, m or h, e.g. 500ms, 30s, 1m30s";
        let text = text.trim();
        if text.is_empty() {
            return Err(format!("empty duration ({ALLOWED})"));
        }
        let mut total: u128 = 0;
        let mut rest = text;
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return Err(format!("invalid duration '{text}' ({ALLOWED})"));
            }
            let (number, tail) = rest.split_at(digits);
            let unit_len = tail.bytes().take_while(u8::is_ascii_alphabetic).count();
            let (unit, tail) = tail.split_at(unit_len);
            let millis_per_unit: u128 = match unit {
                "ms" => 1,
                "s" => 1_000,
                "m" => 60_000,
                "h" => 3_600_000,
                "" => return Err(format!("duration '{text}' has no unit ({ALLOWED})")),
                _ => {
                    return Err(format!(
                        "unknown unit '{unit}' in duration '{text}' ({ALLOWED})"
                    ));
                }
            };
            let number: u128 = number
                .parse()
                .map_err(|_| format!("duration '{text}' is too large (at most 24h)"))?;
            total = total.saturating_add(number.saturating_mul(millis_per_unit));
            rest = tail;
        }
        if total > MAX_SPAN.as_millis() {
            return Err(format!("duration '{text}' is too large (at most 24h)"));
        }
        Ok(Span(Duration::from_millis(total as u64)))
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if ms == 0 {
            return f.write_str("0s");
        }
        let (h, rem) = (ms / 3_600_000, ms % 3_600_000);
        let (m, rem) = (rem / 60_000, rem % 60_000);
        let (s, ms) = (rem / 1_000, rem % 1_000);
        for (value, unit) in [(h, "h"), (m, "m"), (s, "s"), (ms, "ms")] {
            if value > 0 {
                write!(f, "{value}{unit}")?;
            }
        }
        Ok(())
    }
}

/// A size in bytes written with a binary unit: `512MiB`, `1GiB`, `64M`.
///
/// `KiB`, `MiB`, `GiB` (and `K`, `M`, `G`, as systemd's `MemoryMax=` and
/// PM2's `max_memory_restart` write them) are powers of 1024. `kB`, `MB`,
/// `GB` are refused rather than guessed: some tools read them as 1000s,
/// others as 1024s.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Size(pub(crate) u64);

/// The largest size any key accepts: 1 TiB, far above any worker's memory.
pub(crate) const MAX_SIZE: u64 = 1 << 40;

impl FromStr for Size {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        const ALLOWED: &str = "a whole number with a unit: KiB, MiB or GiB (K, M, G), e.g. 512MiB";
        let text = text.trim();
        let digits = text.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(format!("invalid size '{text}' ({ALLOWED})"));
        }
        let (number, unit) = text.split_at(digits);
        let shift = match unit {
            "KiB" | "K" => 10,
            "MiB" | "M" => 20,
            "GiB" | "G" => 30,
            "" => return Err(format!("size '{text}' has no unit ({ALLOWED})")),
            _ if unit.starts_with('.') => {
                return Err(format!("size '{text}' is not a whole number ({ALLOWED})"));
            }
            _ if unit.starts_with(char::is_whitespace) => {
                return Err(format!(
                    "size '{text}' has a space before its unit ({ALLOWED})"
                ));
            }
            "kB" | "KB" | "MB" | "GB" => {
                return Err(format!(
                    "size '{text}' is ambiguous: write {number}{}i{} for powers of 1024 ({ALLOWED})",
                    &unit[..1].to_ascii_uppercase(),
                    &unit[1..]
                ));
            }
            _ => {
                return Err(format!(
                    "unknown unit '{unit}' in size '{text}' ({ALLOWED})"
                ));
            }
        };
        let too_large = || format!("size '{text}' is too large (at most 1024GiB)");
        let number: u64 = number.parse().map_err(|_| too_large())?;
        match number.checked_mul(1 << shift) {
            Some(bytes) if bytes <= MAX_SIZE => Ok(Size(bytes)),
            _ => Err(too_large()),
        }
    }
}

impl fmt::Display for Size {
    /// In the largest unit that divides it exactly: `512MiB`, `1536KiB`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (shift, unit) in [(30, "GiB"), (20, "MiB"), (10, "KiB")] {
            if self.0 >= 1 << shift && self.0.is_multiple_of(1 << shift) {
                return write!(f, "{}{unit}", self.0 >> shift);
            }
        }
        write!(f, "{}B", self.0)
    }
}

/// A whole percentage, written with its sign: `10%`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Percent(pub(crate) u32);

impl FromStr for Percent {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        match text.strip_suffix('%').map(str::parse::<u32>) {
            Some(Ok(p)) => Ok(Percent(p)),
            _ => Err(format!(
                "invalid percentage '{text}' (a whole number followed by %, e.g. 10%)"
            )),
        }
    }
}

impl fmt::Display for Percent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}%", self.0)
    }
}

/// A signal given by name, with or without the `SIG` prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SignalName(pub(crate) Signal);

impl FromStr for SignalName {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        const ALLOWED: &str =
            "a signal name such as SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1, SIGUSR2, SIGWINCH";
        let upper = text.trim().to_ascii_uppercase();
        let full = if upper.starts_with("SIG") {
            upper
        } else {
            format!("SIG{upper}")
        };
        match Signal::from_str(&full) {
            Ok(Signal::SIGSTOP | Signal::SIGTSTP | Signal::SIGCHLD | Signal::SIGCONT) => {
                Err(format!("'{text}' cannot stop a worker ({ALLOWED})"))
            }
            Ok(signal) => Ok(SignalName(signal)),
            Err(_) => Err(format!("unknown signal '{text}' ({ALLOWED})")),
        }
    }
}

impl fmt::Display for SignalName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_str())
    }
}

/// A file mode written in octal, e.g. `"0660"`. The scalar's text is read
/// as octal, so a bare `0660` means the same; quoting it keeps other YAML
/// tools, which would read a number, from disagreeing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Mode(pub(crate) u32);

impl FromStr for Mode {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let digits = text.trim().trim_start_matches("0o");
        match u32::from_str_radix(digits, 8) {
            Ok(mode) if mode <= 0o777 && !digits.is_empty() => Ok(Mode(mode)),
            _ => Err(format!(
                "invalid file mode '{text}' (an octal string from \"0000\" to \"0777\", e.g. \"0660\")"
            )),
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04o}", self.0)
    }
}

/// Implements serde for a type through its `FromStr` and `Display`, so the
/// parse error text reaches the user unchanged.
macro_rules! serde_via_str {
    ($($ty:ty),*) => {$(
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }
    )*};
}
serde_via_str!(Span, Size, Percent, SignalName, Mode);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units_and_print_back() {
        for (text, ms, printed) in [
            ("500ms", 500, "500ms"),
            ("30s", 30_000, "30s"),
            ("1m30s", 90_000, "1m30s"),
            ("2h", 7_200_000, "2h"),
            ("0s", 0, "0s"),
            ("1500ms", 1_500, "1s500ms"),
        ] {
            let span: Span = text.parse().unwrap();
            assert_eq!(span.0, Duration::from_millis(ms), "{text}");
            assert_eq!(span.to_string(), printed);
            assert_eq!(printed.parse::<Span>().unwrap(), span);
        }
    }

    #[test]
    fn durations_without_a_known_unit_are_rejected_with_the_allowed_form() {
        let err = "30".parse::<Span>().unwrap_err();
        assert_eq!(
            err,
            "duration '30' has no unit (a number with a unit: ms, s, m or h, e.g. 500ms, 30s, 1m30s)"
        );
        assert!(
            "5x".parse::<Span>()
                .unwrap_err()
                .starts_with("unknown unit 'x'")
        );
        assert!("-1s".parse::<Span>().is_err());
        assert!("".parse::<Span>().is_err());
        assert!("25h".parse::<Span>().unwrap_err().contains("too large"));
        assert!("99999999999999999999999s".parse::<Span>().is_err());
    }

    #[test]
    fn sizes_parse_with_binary_units_and_print_back() {
        for (text, bytes, printed) in [
            ("512MiB", 512 << 20, "512MiB"),
            ("64M", 64 << 20, "64MiB"),
            ("1GiB", 1 << 30, "1GiB"),
            ("2G", 2 << 30, "2GiB"),
            ("1536KiB", 1536 << 10, "1536KiB"),
            ("1024MiB", 1 << 30, "1GiB"),
            ("0MiB", 0, "0B"),
        ] {
            let size: Size = text.parse().unwrap();
            assert_eq!(size.0, bytes, "{text}");
            assert_eq!(size.to_string(), printed);
            if bytes > 0 {
                assert_eq!(printed.parse::<Size>().unwrap(), size);
            }
        }
    }

    #[test]
    fn sizes_without_a_binary_unit_are_rejected_with_the_allowed_form() {
        let allowed = "(a whole number with a unit: KiB, MiB or GiB (K, M, G), e.g. 512MiB)";
        assert_eq!(
            "512".parse::<Size>().unwrap_err(),
            format!("size '512' has no unit {allowed}")
        );
        assert_eq!(
            "512MB".parse::<Size>().unwrap_err(),
            format!("size '512MB' is ambiguous: write 512MiB for powers of 1024 {allowed}")
        );
        assert_eq!(
            "1kB".parse::<Size>().unwrap_err(),
            format!("size '1kB' is ambiguous: write 1KiB for powers of 1024 {allowed}")
        );
        assert!(
            "5TiB"
                .parse::<Size>()
                .unwrap_err()
                .starts_with("unknown unit 'TiB'")
        );
        assert!(
            "-1MiB"
                .parse::<Size>()
                .unwrap_err()
                .starts_with("invalid size")
        );
        assert_eq!(
            "1.5GiB".parse::<Size>().unwrap_err(),
            format!("size '1.5GiB' is not a whole number {allowed}")
        );
        assert_eq!(
            "512 MiB".parse::<Size>().unwrap_err(),
            format!("size '512 MiB' has a space before its unit {allowed}")
        );
        assert!("1025GiB".parse::<Size>().unwrap_err().contains("too large"));
        assert!(
            "99999999999999999999MiB"
                .parse::<Size>()
                .unwrap_err()
                .contains("too large")
        );
        assert!("".parse::<Size>().is_err());
    }

    #[test]
    fn percentages_need_their_sign() {
        assert_eq!("10%".parse::<Percent>().unwrap(), Percent(10));
        assert_eq!(Percent(0).to_string(), "0%");
        assert!("10".parse::<Percent>().is_err());
        assert!("-5%".parse::<Percent>().is_err());
        assert!("1.5%".parse::<Percent>().is_err());
    }

    #[test]
    fn signals_parse_with_or_without_prefix_and_refuse_stop() {
        assert_eq!("SIGTERM".parse::<SignalName>().unwrap().0, Signal::SIGTERM);
        assert_eq!("int".parse::<SignalName>().unwrap().0, Signal::SIGINT);
        assert!("SIGSTOP".parse::<SignalName>().is_err());
        assert!(
            "SIGNOPE"
                .parse::<SignalName>()
                .unwrap_err()
                .starts_with("unknown signal")
        );
    }

    #[test]
    fn modes_are_octal() {
        assert_eq!("0660".parse::<Mode>().unwrap().0, 0o660);
        assert_eq!(Mode(0o600).to_string(), "0600");
        assert!("0999".parse::<Mode>().is_err());
        assert!("1777".parse::<Mode>().is_err());
    }
}

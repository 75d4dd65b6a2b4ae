//! `workers.adopt`, checked: which listener an unmodified program gets
//! when its own `bind(2)` names an address (`docs/adopt.md`). Only for
//! `app: exec`; each name a TCP listener of `listen`; each value a port
//! (1 to 65535) or an address of one.

use std::net::SocketAddr;

use serde_saphyr::Spanned;

use super::diagnostics::{Located, located};
use super::schema::{AppName, RawAdopt, RawAdoptSpec};
use super::{Address, Adopt, AdoptSpec, AppKind, Listen};

/// What a value may be, for the messages.
const ALLOWED: &str = "a port such as 3000, or *:3000, 0.0.0.0:3000, [::]:3000, 127.0.0.1:3000";

/// `workers.adopt`: `app` is what `app:` resolved to (`app_key` its
/// token, if written), `listen` the validated listeners.
pub(super) fn validate_adopt(
    app: AppKind,
    app_key: Option<&Spanned<AppName>>,
    adopt: Option<Spanned<RawAdopt>>,
    listen: &[Listen],
) -> Result<Adopt, Located> {
    let Some(adopt) = adopt else {
        return Ok(Adopt::default());
    };
    if app != AppKind::Exec && !adopt.value.0.is_empty() {
        let because = match app_key {
            Some(_) => "",
            None => " (the default app is builtin)",
        };
        return Err(located(
            &adopt,
            "workers.adopt",
            format!("is only used with app: exec{because}"),
        ));
    }
    let mut out: Vec<(String, AdoptSpec)> = Vec::new();
    for (name, value) in adopt.value.0 {
        let key = format!("workers.adopt.{}", name.value);
        let Some(listener) = listen.iter().find(|l| l.name == name.value) else {
            let names: Vec<&str> = listen.iter().map(|l| l.name.as_str()).collect();
            return Err(located(
                &name,
                key,
                format!(
                    "no listener named '{}' (listeners: {})",
                    name.value,
                    names.join(", ")
                ),
            ));
        };
        if let Address::Unix(_) = listener.address {
            return Err(located(
                &name,
                key,
                format!(
                    "listener '{}' is a unix socket; only TCP listeners can be adopted",
                    name.value
                ),
            ));
        }
        if out.iter().any(|(n, _)| *n == name.value) {
            return Err(located(
                &name,
                key,
                format!("listener '{}' is adopted twice", name.value),
            ));
        }
        let spec = parse_spec(&value.value).map_err(|m| located(&value, &key, m))?;
        if let Some((other, _)) = out.iter().find(|(_, s)| *s == spec) {
            return Err(located(
                &value,
                key,
                format!("'{spec}' is already adopted by listener '{other}'"),
            ));
        }
        out.push((name.value, spec));
    }
    Ok(Adopt(out))
}

/// A `workers.adopt` value: `3000`, `*:3000`, or an IP address and port.
fn parse_spec(value: &RawAdoptSpec) -> Result<AdoptSpec, String> {
    let port_in_range = |n: i64| {
        u16::try_from(n)
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("port {n} is out of range (1 to 65535)"))
    };
    match value {
        RawAdoptSpec::Port(n) => port_in_range(*n).map(AdoptSpec::Port),
        RawAdoptSpec::Text(text) => {
            if let Some(port) = text.strip_prefix("*:") {
                return match port.parse::<i64>() {
                    Ok(n) => port_in_range(n).map(AdoptSpec::Port),
                    Err(_) => Err(format!("invalid address '{text}' ({ALLOWED})")),
                };
            }
            if let Ok(n) = text.parse::<i64>() {
                return port_in_range(n).map(AdoptSpec::Port);
            }
            match text.parse::<SocketAddr>() {
                Ok(addr) if addr.port() == 0 => {
                    Err(format!("port 0 is out of range (1 to 65535) in '{text}'"))
                }
                Ok(addr) => Ok(AdoptSpec::Addr(addr)),
                Err(_) => Err(format!("invalid address '{text}' ({ALLOWED})")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(text: &str) -> Result<AdoptSpec, String> {
        parse_spec(&RawAdoptSpec::Text(text.into()))
    }

    #[test]
    fn ports_and_addresses_are_read_as_the_contract_writes_them() {
        assert_eq!(
            parse_spec(&RawAdoptSpec::Port(3000)),
            Ok(AdoptSpec::Port(3000))
        );
        assert_eq!(spec("*:3000"), Ok(AdoptSpec::Port(3000)));
        assert_eq!(spec("3000"), Ok(AdoptSpec::Port(3000)));
        for a in ["0.0.0.0:3000", "[::]:3000", "127.0.0.1:3000", "[::1]:3000"] {
            let s = spec(a).unwrap();
            assert_eq!(s, AdoptSpec::Addr(a.parse().unwrap()));
            assert_eq!(s.to_string(), a);
        }
        assert_eq!(AdoptSpec::Port(3000).to_string(), "*:3000");
    }

    #[test]
    fn ports_outside_1_to_65535_and_names_are_refused() {
        for n in [0, -1, 65536] {
            assert!(parse_spec(&RawAdoptSpec::Port(n)).is_err(), "{n}");
        }
        for t in [
            "*:0",
            "*:65536",
            "0.0.0.0:0",
            "localhost:3000",
            "*:x",
            "",
            "::1:3000",
        ] {
            assert!(spec(t).is_err(), "{t:?}");
        }
    }
}

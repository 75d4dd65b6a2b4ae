//! A pidfile's content: a whole pid, as the master writes it
//! (`master::pidfile`) and as the control client reads it to trust the
//! master it talks to (`control::client`). Below both, so neither reaches
//! into the other for it.

/// A whole pid as we write it: decimal digits, then one `\n`, nothing else,
/// greater than 0 and within `pid_t`. Anything else (empty, cut short,
/// garbage) is no pid.
pub(crate) fn parse(content: &[u8]) -> Option<u32> {
    let digits = content.strip_suffix(b"\n")?;
    if digits.is_empty() || digits.len() > 10 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let pid: u32 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    (pid > 0 && pid <= i32::MAX as u32).then_some(pid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_pid_accepts_only_a_whole_positive_pid() {
        assert_eq!(parse(b"1234\n"), Some(1234));
        assert_eq!(parse(b"1\n"), Some(1));
        assert_eq!(parse(b"2147483647\n"), Some(2147483647));
        for bad in [
            &b""[..],
            b"\n",
            b"1234",
            b"0\n",
            b"00\n",
            b"-1\n",
            b"+1\n",
            b" 1\n",
            b"1 \n",
            b"12\n\n",
            b"1\r\n",
            b"2147483648\n",
            b"99999999999\n",
            b"\xff\n",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }
}

//! Parsers and bounds of option values (durations, counts, rates, server addresses).

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use super::ConfigError;

// Bounds of the options: values past them are typing mistakes, and some would overflow
// a deadline (`Instant + Duration`) or a pacing interval deep inside a scan.
/// The longest duration any option takes (a week: `--repeat-interval` over days).
pub const MAX_DURATION: Duration = Duration::from_secs(7 * 24 * 3600);
/// The longest timeout of one connection, handshake or lookup.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(600);
/// The shortest timeout: below a millisecond nothing can answer.
pub const MIN_TIMEOUT: Duration = Duration::from_millis(1);
/// The longest `--dns-wait` (lingering after the first reply, per target).
pub const MAX_DNS_WAIT: Duration = Duration::from_secs(60);
/// The longest `--residual-wait` / `--residual-recheck`.
pub const MAX_RESIDUAL_WAIT: Duration = Duration::from_secs(3600);
pub const MAX_CONCURRENCY: usize = 100_000;
pub const MAX_IPS_PER_TARGET: usize = 64;
pub const MAX_DNS_SOCKETS: usize = 1024;
pub const MAX_RETRIES: i64 = 10;
/// Highest `--rate` (DNS queries a second); the lowest non-zero one is [`MIN_RATE`].
pub const MAX_RATE: f64 = 1_000_000.0;
/// Lowest non-zero `--rate`: one query a day would already be a mistake.
pub const MIN_RATE: f64 = 0.001;

/// Parses `1s`, `500ms`, `2.5s`, `3m`, `1e3s` or a bare number of seconds, up to
/// [`MAX_DURATION`].
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    parse_duration_in(text, Duration::ZERO, MAX_DURATION)
}

/// A timeout: [`parse_duration`] between [`MIN_TIMEOUT`] and [`MAX_TIMEOUT`].
pub fn parse_timeout(text: &str) -> Result<Duration, String> {
    parse_duration_in(text, MIN_TIMEOUT, MAX_TIMEOUT)
}

/// [`parse_duration`] with bounds: `min..=max`.
pub fn parse_duration_in(text: &str, min: Duration, max: Duration) -> Result<Duration, String> {
    let text = text.trim();
    // The unit is the trailing run of letters, so that `1e3s` is 1000 seconds.
    let number_end = text
        .trim_end_matches(|c: char| c.is_ascii_alphabetic())
        .len();
    let (number, unit) = text.split_at(number_end);
    let unit = if unit.is_empty() { "s" } else { unit };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (e.g. 500ms, 1s, 2m)"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        _ => return Err(format!("{text:?}: unknown unit {unit:?} (ms, s or m)")),
    };
    if !seconds.is_finite() || seconds < 0.0 {
        return Err(format!(
            "{text:?}: a duration is a finite number, 0 or more"
        ));
    }
    if seconds > max.as_secs_f64() {
        return Err(format!(
            "{text:?} is too long: at most {}",
            describe_duration(max)
        ));
    }
    let duration = Duration::try_from_secs_f64(seconds).map_err(|e| format!("{text:?}: {e}"))?;
    if duration < min {
        return Err(format!(
            "{text:?} is too short: at least {}",
            describe_duration(min)
        ));
    }
    Ok(duration)
}

fn describe_duration(duration: Duration) -> String {
    let ms = duration.as_millis();
    if ms.is_multiple_of(60_000) {
        format!("{}m", ms / 60_000)
    } else if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// A count option between `min` and `max`.
pub fn parse_count(text: &str, min: usize, max: usize) -> Result<usize, String> {
    let value: u128 = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a whole number"))?;
    usize::try_from(value)
        .ok()
        .filter(|v| (min..=max).contains(v))
        .ok_or_else(|| format!("{value} is out of range: {min} to {max}"))
}

/// `--rate`: 0 (unpaced), or between [`MIN_RATE`] and [`MAX_RATE`] queries a second.
pub fn parse_rate(text: &str) -> Result<f64, String> {
    let rate: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a number"))?;
    if rate == 0.0 || (MIN_RATE..=MAX_RATE).contains(&rate) {
        Ok(rate)
    } else {
        Err(format!(
            "{text:?} is out of range: 0 (unpaced) or {MIN_RATE} to {MAX_RATE} queries a second"
        ))
    }
}

/// Parses `IP`, `IP:PORT` or `[IPv6]:PORT`.
pub fn parse_server(text: &str, default_port: u16) -> Result<SocketAddr, ConfigError> {
    if let Ok(addr) = SocketAddr::from_str(text) {
        return Ok(addr);
    }
    let bare = text.trim_start_matches('[').trim_end_matches(']');
    IpAddr::from_str(bare)
        .map(|ip| SocketAddr::new(ip, default_port))
        .map_err(|_| ConfigError::BadAddress {
            input: text.to_owned(),
        })
}

/// The first `nameserver` of a resolv.conf.
pub fn system_resolver(path: &Path) -> Result<SocketAddr, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::NoSystemResolver {
        path: path.to_owned(),
        source,
    })?;
    text.lines()
        .filter_map(|line| line.trim().strip_prefix("nameserver"))
        .map(str::trim)
        .find_map(|ip| {
            ip.split('%')
                .next()
                .and_then(|ip| IpAddr::from_str(ip).ok())
        })
        .map(|ip| SocketAddr::new(ip, 53))
        .ok_or_else(|| ConfigError::NoNameserver {
            path: path.to_owned(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("3m").unwrap(), Duration::from_secs(180));
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("3h").is_err());
        assert_eq!(parse_duration("1e3s").unwrap(), Duration::from_secs(1000));
        assert_eq!(parse_duration("1e3").unwrap(), Duration::from_secs(1000));
        assert_eq!(
            parse_duration("2.5e2ms").unwrap(),
            Duration::from_millis(250)
        );
        for refused in ["inf", "NaN", "-1s", "1e16s", "1e400", "", "s"] {
            assert!(parse_duration(refused).is_err(), "{refused:?}");
        }
        assert_eq!(parse_duration("10080m").unwrap(), MAX_DURATION);
        assert!(parse_timeout("0").is_err());
        assert!(parse_timeout("601s").is_err());
        assert_eq!(parse_timeout("1ms").unwrap(), MIN_TIMEOUT);
    }

    #[test]
    fn counts_and_rates() {
        assert_eq!(parse_count("500", 1, MAX_CONCURRENCY), Ok(500));
        assert!(parse_count("0", 1, MAX_CONCURRENCY).is_err());
        assert!(parse_count("18446744073709551616", 1, MAX_CONCURRENCY).is_err());
        assert!(parse_count("-1", 1, MAX_CONCURRENCY).is_err());
        assert_eq!(parse_rate("0"), Ok(0.0));
        assert_eq!(parse_rate("1000"), Ok(1000.0));
        for refused in ["1e-19", "-5", "NaN", "inf", "1e7"] {
            assert!(parse_rate(refused).is_err(), "{refused:?}");
        }
    }

    #[test]
    fn servers() {
        assert_eq!(
            parse_server("198.18.0.53", 53).unwrap(),
            "198.18.0.53:53".parse().unwrap()
        );
        assert_eq!(
            parse_server("127.0.0.1:5353", 53).unwrap(),
            "127.0.0.1:5353".parse().unwrap()
        );
        assert_eq!(
            parse_server("[::1]:54", 53).unwrap(),
            "[::1]:54".parse().unwrap()
        );
        assert_eq!(
            parse_server("::1", 53).unwrap(),
            "[::1]:53".parse().unwrap()
        );
        assert!(parse_server("resolver.example", 53).is_err());
    }

    #[test]
    fn resolv_conf() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("resolv.conf");
        std::fs::write(
            &path,
            "# comment\nsearch lan\nnameserver fe80::1%eth0\nnameserver 10.0.0.1\n",
        )
        .unwrap();
        assert_eq!(
            system_resolver(&path).unwrap(),
            "[fe80::1]:53".parse().unwrap()
        );
        std::fs::write(&path, "search lan\n").unwrap();
        assert!(matches!(
            system_resolver(&path),
            Err(ConfigError::NoNameserver { .. })
        ));
        let err = system_resolver(&dir.path().join("missing.conf")).unwrap_err();
        let source = std::error::Error::source(&err).expect("the I/O error is kept");
        assert!(source.is::<std::io::Error>(), "{source:?}");
    }
}

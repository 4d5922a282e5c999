//! The `knownHosts` of an SSH credentials Secret: OpenSSH `known_hosts` lines checked against the key
//! the server presents. Plain host names and `[host]:port` entries are understood; hashed (`|1|...`),
//! wildcard and `@cert-authority` entries are not (they never match), and `@revoked` keys are refused.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use git2::cert::CertHostkey;

/// Parsed `known_hosts` entries.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct KnownHosts {
    entries: Vec<Entry>,
}

#[derive(Debug, PartialEq, Eq)]
struct Entry {
    hosts: Vec<String>,
    key_type: String,
    /// The key as written: base64 of the key blob.
    key: String,
    revoked: bool,
}

impl KnownHosts {
    pub(super) fn parse(text: &str) -> Self {
        let entries = text.lines().filter_map(parse_line).collect();
        Self { entries }
    }

    /// Whether `key`, presented by `host`, is listed (and not revoked).
    pub(super) fn accepts(&self, host: &str, key: &CertHostkey<'_>) -> bool {
        let (Some(blob), Some(key_type)) = (key.hostkey(), key.hostkey_type()) else {
            return false;
        };
        self.accepts_key(host, key_type.name(), &STANDARD.encode(blob))
    }

    fn accepts_key(&self, host: &str, key_type: &str, key: &str) -> bool {
        let matching = |e: &&Entry| e.key_type == key_type && e.key == key && e.matches_host(host);
        let mut found = self.entries.iter().filter(matching).peekable();
        found.peek().is_some() && found.all(|e| !e.revoked)
    }
}

impl Entry {
    fn matches_host(&self, host: &str) -> bool {
        self.hosts.iter().any(|h| {
            h.eq_ignore_ascii_case(host)
                || h.strip_prefix('[')
                    .and_then(|rest| rest.split_once("]:"))
                    .is_some_and(|(name, _port)| name.eq_ignore_ascii_case(host))
        })
    }
}

fn parse_line(line: &str) -> Option<Entry> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let mut fields = line.split_whitespace().peekable();
    let revoked = match fields.peek() {
        Some(&"@revoked") => {
            fields.next();
            true
        }
        Some(marker) if marker.starts_with('@') => return None,
        _ => false,
    };
    let hosts = fields.next()?.split(',').map(str::to_string).collect();
    Some(Entry {
        hosts,
        key_type: fields.next()?.to_string(),
        key: fields.next()?.to_string(),
        revoked,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const KNOWN_HOSTS: &str = "\
# comment
github.com,140.82.121.4 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl
[git.example.com]:2222 ecdsa-sha2-nistp256 AAAAE2VjZHNh
@cert-authority *.example.org ssh-ed25519 AAAACA
@revoked bad.example.com ssh-ed25519 AAAAREVOKED
bad.example.com ssh-ed25519 AAAAREVOKED
|1|hashed= ssh-ed25519 AAAAHASHED
";

    #[test]
    fn listed_keys_are_accepted() {
        let kh = KnownHosts::parse(KNOWN_HOSTS);
        let github = "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";
        assert!(kh.accepts_key("github.com", "ssh-ed25519", github));
        assert!(kh.accepts_key("GitHub.com", "ssh-ed25519", github));
        assert!(kh.accepts_key("140.82.121.4", "ssh-ed25519", github));
        assert!(kh.accepts_key("git.example.com", "ecdsa-sha2-nistp256", "AAAAE2VjZHNh"));
    }

    #[test]
    fn other_keys_hosts_and_revoked_keys_are_refused() {
        let kh = KnownHosts::parse(KNOWN_HOSTS);
        assert!(!kh.accepts_key("github.com", "ssh-ed25519", "AAAAOTHER"));
        assert!(!kh.accepts_key(
            "github.com",
            "ssh-rsa",
            "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
        ));
        assert!(!kh.accepts_key("evil.com", "ecdsa-sha2-nistp256", "AAAAE2VjZHNh"));
        assert!(!kh.accepts_key("bad.example.com", "ssh-ed25519", "AAAAREVOKED"));
        assert!(!kh.accepts_key("x.example.org", "ssh-ed25519", "AAAACA"));
        assert!(!KnownHosts::parse("").accepts_key("github.com", "ssh-ed25519", "AAAA"));
    }
}

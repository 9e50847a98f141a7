//! Secrets, for the edges that show text (the log, the status page): one `Redactor` knows every
//! configured secret and cuts it out of any text before it is written or served, in the forms
//! an error text can carry it: as is, URL-encoded, base64 (also inside a longer base64 string,
//! as in `Authorization: Basic`), in any letter case, and any piece of it of `PIECE` characters
//! or more (a peer's error detail cut short).

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use secrecy::ExposeSecret;

use crate::config::Config;

/// The shortest piece of a secret that is cut out. A random key or token shares no such piece
/// with the log's own words; a password made of words cuts those words where they appear.
pub(crate) const PIECE: usize = 8;
/// Below this a secret is not cut out at all: a three-letter password would take every
/// occurrence of its letters with it, and guards nothing anyway.
pub(crate) const SHORTEST: usize = 4;

/// Cuts configured secrets out of text. Clones share their secrets, so one added later (the
/// broker password the Supervisor hands out) is cut everywhere.
#[derive(Clone, Default)]
pub struct Redactor {
    needles: Arc<RwLock<Needles>>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Redactor")
    }
}

#[derive(Default)]
struct Needles {
    /// Every `PIECE`-byte window of every form of every secret, in lower case, and what it
    /// is a piece of.
    pieces: HashMap<[u8; PIECE], &'static str>,
    /// Forms shorter than `PIECE`, in lower case: only found whole.
    short: Vec<(Vec<u8>, &'static str)>,
}

impl Redactor {
    /// The secrets of the options, and the Supervisor's token when there is one.
    pub fn for_config(config: &Config) -> Self {
        let redactor = Self::default();
        redactor.add("api key", config.dsmr.api_key.expose_secret());
        if let Some(password) = config.dsmr.url.password() {
            // `Url` keeps it percent-encoded; the forms include that encoding again.
            redactor.add("url password", &percent_decode(password));
        }
        if let Some(password) = &config.mqtt.password {
            redactor.add("mqtt password", password.expose_secret());
        }
        if let Some(history) = &config.history {
            redactor.add("home assistant token", history.target.token.expose_secret());
        }
        if let Ok(token) = std::env::var("SUPERVISOR_TOKEN") {
            redactor.add("home assistant token", token.trim());
        }
        redactor
    }

    /// Cuts `secret` from now on; `label` names it in its place (`[api key]`).
    pub(crate) fn add(&self, label: &'static str, secret: &str) {
        if secret.chars().count() < SHORTEST {
            return;
        }
        let mut needles = self.needles.write().unwrap_or_else(|e| e.into_inner());
        for form in forms(secret.as_bytes()) {
            let form = form.to_ascii_lowercase();
            if form.len() >= PIECE {
                for window in form.windows(PIECE) {
                    let window: [u8; PIECE] = window.try_into().expect("PIECE bytes");
                    needles.pieces.entry(window).or_insert(label);
                }
            } else if !form.is_empty() && !needles.short.iter().any(|(s, _)| *s == form) {
                needles.short.push((form, label));
            }
        }
    }

    /// `text` with every secret's piece replaced by `[label]`.
    pub(crate) fn redact<'t>(&self, text: &'t str) -> Cow<'t, str> {
        let needles = self.needles.read().unwrap_or_else(|e| e.into_inner());
        if needles.pieces.is_empty() && needles.short.is_empty() {
            return Cow::Borrowed(text);
        }
        let lower = text.as_bytes().to_ascii_lowercase();
        // Which secret, if any, covers each byte.
        let mut cover: Vec<Option<&'static str>> = vec![None; lower.len()];
        let mut found = false;
        for (at, window) in lower.windows(PIECE).enumerate() {
            let window: &[u8; PIECE] = window.try_into().expect("PIECE bytes");
            if let Some(label) = needles.pieces.get(window) {
                cover[at..at + PIECE].iter_mut().for_each(|c| {
                    c.get_or_insert(label);
                });
                found = true;
            }
        }
        for (form, label) in &needles.short {
            let mut from = 0;
            while let Some(at) = find(&lower[from..], form) {
                let at = from + at;
                cover[at..at + form.len()].iter_mut().for_each(|c| {
                    c.get_or_insert(label);
                });
                found = true;
                from = at + 1;
            }
        }
        if !found {
            return Cow::Borrowed(text);
        }
        // A piece may start or end inside a character (of a secret with non-ASCII letters):
        // widen it to whole characters.
        for at in 1..cover.len() {
            if !text.is_char_boundary(at) && cover[at].is_none() && cover[at - 1].is_some() {
                cover[at] = cover[at - 1];
            }
        }
        for at in (0..cover.len().saturating_sub(1)).rev() {
            if !text.is_char_boundary(at + 1) && cover[at].is_none() && cover[at + 1].is_some() {
                cover[at] = cover[at + 1];
            }
        }
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        while at < text.len() {
            match cover[at] {
                Some(label) => {
                    out.push('[');
                    out.push_str(label);
                    out.push(']');
                    while at < text.len() && cover[at].is_some() {
                        at += 1;
                    }
                }
                None => {
                    let end = (at..text.len())
                        .find(|&i| cover[i].is_some())
                        .unwrap_or(text.len());
                    out.push_str(&text[at..end]);
                    at = end;
                }
            }
        }
        Cow::Owned(out)
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Redactor {
    type Writer = RedactedLine;

    fn make_writer(&'a self) -> RedactedLine {
        RedactedLine {
            line: Vec::new(),
            redactor: self.clone(),
        }
    }
}

/// One log event on its way to stdout: collected whole, so that a secret split across writes
/// is still found, and written redacted when the event is done.
pub struct RedactedLine {
    line: Vec<u8>,
    redactor: Redactor,
}

impl std::io::Write for RedactedLine {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.line.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for RedactedLine {
    fn drop(&mut self) {
        let line = String::from_utf8_lossy(&self.line);
        let line = self.redactor.redact(&line);
        let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), line.as_bytes());
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The ways text carries `secret`: as is, URL-encoded (`%20` and `+` for a space), and base64
/// (standard and URL-safe alphabets) at each of the three alignments it can have inside a
/// longer encoded string, without the characters it shares with its neighbours.
fn forms(secret: &[u8]) -> Vec<Vec<u8>> {
    let mut forms = vec![secret.to_vec()];
    let encoded = percent_encode(secret);
    if encoded != secret {
        forms.push(encoded.clone());
        forms.push(
            String::from_utf8_lossy(&encoded)
                .replace("%20", "+")
                .into_bytes(),
        );
    }
    for offset in 0..3 {
        let mut shifted = vec![0; offset];
        shifted.extend_from_slice(secret);
        let first = (offset * 8).div_ceil(6);
        let last = shifted.len() * 8 / 6;
        for alphabet in [STANDARD_NO_PAD, URL_SAFE_NO_PAD] {
            let encoded = alphabet.encode(&shifted);
            if first < last {
                forms.push(encoded.as_bytes()[first..last].to_vec());
            }
        }
    }
    forms
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        let hex = bytes
            .get(at + 1..at + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[at], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                at += 3;
            }
            (b, _) => {
                out.push(b);
                at += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn percent_encode(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b);
        } else {
            out.extend_from_slice(format!("%{b:02X}").as_bytes());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "Xk9fQ2mZp7LrT4vB";
    const PASSWORD: &str = "pa ss/wörd+42!";
    const TOKEN: &str = "eyJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJhYmNkZWYxMjM0NTYifQ.q1w2e3r4t5y6u7i8o9p0";

    fn redactor() -> Redactor {
        let r = Redactor::default();
        r.add("api key", KEY);
        r.add("mqtt password", PASSWORD);
        r.add("home assistant token", TOKEN);
        r
    }

    fn b64(text: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(text)
    }

    fn assert_clean(text: &str, secret: &str) {
        let out = redactor().redact(text).into_owned();
        for piece in secret.as_bytes().windows(PIECE) {
            let piece = String::from_utf8_lossy(piece).to_lowercase();
            assert!(!out.to_lowercase().contains(&piece), "{piece:?} in {out:?}");
        }
    }

    /// Each secret, in each form an error text can carry it, is cut, and named.
    #[test]
    fn every_form_of_every_secret_is_cut() {
        let r = redactor();
        let encoded = String::from_utf8(percent_encode(PASSWORD.as_bytes())).unwrap();
        let cases = [
            format!("403 Invalid token {KEY}"),
            format!("403 Invalid token {}", KEY.to_lowercase()),
            format!("403 Invalid token {}", KEY.to_uppercase()),
            format!("password={encoded}"),
            format!("password={}", encoded.to_lowercase()),
            format!("password={}", encoded.replace("%20", "+")),
            format!("Basic {}", b64(&format!("bridge:{PASSWORD}"))),
            format!("Basic {}", b64(&format!("b:{PASSWORD}"))),
            format!("Basic {}", b64(&format!(":{PASSWORD}"))),
            format!("x-key {}", b64(KEY)),
            format!("detail: token {}…", &TOKEN[40..]),
            format!("detail: {}", &TOKEN[10..30]),
            format!("the password is {PASSWORD}, really"),
        ];
        for case in &cases {
            let out = r.redact(case);
            assert!(out.contains('['), "nothing cut from {case:?}: {out:?}");
            for secret in [KEY, PASSWORD, TOKEN] {
                assert_clean(case, secret);
            }
        }
        assert_eq!(
            r.redact(&format!("403 Invalid token {KEY} ({KEY})")),
            "403 Invalid token [api key] ([api key])"
        );
        assert_eq!(r.redact(&format!("pw {PASSWORD}.")), "pw [mqtt password].");
    }

    /// Text without secrets passes as it is, borrowed.
    #[test]
    fn other_text_is_untouched() {
        let r = redactor();
        for text in [
            "DSMR-reader answered HTTP 500",
            "cannot connect to the broker at core-mosquitto:1883: connection refused",
            "",
            "ö",
        ] {
            assert!(matches!(r.redact(text), Cow::Borrowed(t) if t == text));
        }
        assert!(matches!(
            Redactor::default().redact("anything"),
            Cow::Borrowed(_)
        ));
    }

    /// A short password is cut whole, a too short one not at all, and a piece shorter than
    /// `PIECE` stays.
    #[test]
    fn short_secrets_and_pieces() {
        let r = Redactor::default();
        r.add("mqtt password", "h0me");
        r.add("api key", "ab");
        assert_eq!(
            r.redact("login h0me/H0ME failed ab"),
            "login [mqtt password]/[mqtt password] failed ab"
        );
        let r = redactor();
        assert_eq!(r.redact(&KEY[..PIECE - 1]), &KEY[..PIECE - 1]);
    }

    /// Any text, with secrets in it or not: valid UTF-8 out, no panic.
    #[test]
    fn non_ascii_text_stays_text() {
        let r = Redactor::default();
        r.add("mqtt password", "wörtwörtwört");
        let out = r.redact("xx örtwörtwö yy ☃");
        assert_eq!(out, "xx [mqtt password] yy ☃");
    }
}

//! The dashboard's browser sessions: a random session id per sign-in, held in memory.
//!
//! The browser gets the id as an `HttpOnly`, `SameSite=Strict` cookie; the API token itself is
//! never stored in the browser. Only the SHA-256 of each id is kept, so lookups by hash reveal
//! nothing through timing. Sessions end after [`SESSION_LIFETIME_MS`], at sign-out, or when the
//! server restarts.

use std::collections::HashMap;
use std::sync::Mutex;

/// The cookie that carries a session id.
pub const COOKIE: &str = "warden_session";
/// How long a sign-in lasts: a working day.
pub const SESSION_LIFETIME_MS: i64 = 12 * 3600 * 1000;
/// The most sessions kept; signing in beyond it ends the session closest to expiry, so a
/// client signing in in a loop costs bounded memory.
pub const MAX_SESSIONS: usize = 1024;

/// The signed-in sessions. A plain mutex: every use is a short map operation, never held
/// across an await.
#[derive(Debug, Default)]
pub struct Sessions {
    /// SHA-256 of the session id, to its expiry time (ms).
    by_hash: Mutex<HashMap<[u8; 32], i64>>,
}

fn hash(id: &str) -> [u8; 32] {
    ring::digest::digest(&ring::digest::SHA256, id.as_bytes())
        .as_ref()
        .try_into()
        .expect("SHA-256 is 32 bytes")
}

impl Sessions {
    /// Starts a session; returns its id (256 random bits, hex).
    pub fn create(&self, now_ms: i64) -> String {
        let mut bytes = [0u8; 32];
        // The system RNG does not fail on Linux.
        let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes);
        let id = hex::encode(bytes);
        let mut map = self.by_hash.lock().expect("sessions lock");
        map.retain(|_, expires| *expires > now_ms);
        if map.len() >= MAX_SESSIONS
            && let Some(oldest) = map.iter().min_by_key(|(_, e)| **e).map(|(k, _)| *k)
        {
            map.remove(&oldest);
        }
        map.insert(hash(&id), now_ms + SESSION_LIFETIME_MS);
        id
    }

    /// Whether `id` is a live session.
    pub fn is_valid(&self, id: &str, now_ms: i64) -> bool {
        let map = self.by_hash.lock().expect("sessions lock");
        map.get(&hash(id)).is_some_and(|expires| *expires > now_ms)
    }

    /// Ends a session (sign-out); unknown ids are ignored.
    pub fn end(&self, id: &str) {
        self.by_hash.lock().expect("sessions lock").remove(&hash(id));
    }
}

/// The value of cookie `name` in a `Cookie` header.
pub fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').filter_map(|pair| pair.trim().split_once('=')).find(|(k, _)| *k == name).map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_expire_end_and_stay_bounded() {
        let sessions = Sessions::default();
        let id = sessions.create(0);
        assert!(sessions.is_valid(&id, 1));
        assert!(!sessions.is_valid(&id, SESSION_LIFETIME_MS));
        assert!(!sessions.is_valid("not-a-session", 1));
        sessions.end(&id);
        assert!(!sessions.is_valid(&id, 1));
        let first = sessions.create(0);
        for n in 1..=MAX_SESSIONS as i64 {
            sessions.create(n);
        }
        assert!(!sessions.is_valid(&first, 1), "the oldest session made room");
        assert_eq!(sessions.by_hash.lock().unwrap().len(), MAX_SESSIONS);
    }

    #[test]
    fn cookies_are_found_by_name() {
        assert_eq!(cookie("a=1; warden_session=abc; b=2", COOKIE), Some("abc"));
        assert_eq!(cookie("warden_session_x=1", COOKIE), None);
        assert_eq!(cookie("", COOKIE), None);
    }
}

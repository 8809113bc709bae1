//! The reference [`PasswordHasher`]: Argon2id (RFC 9106) through the
//! `argon2` crate.
//!
//! Hashing is deliberately slow and memory-hard, so it never runs on the
//! async runtime's worker threads: every hash and verification runs on
//! tokio's blocking pool, at most [`Argon2idHasher::concurrency`] at once
//! (each holds its `m_cost` of memory), with at most
//! [`Argon2idHasher::max_waiting`] more waiting for a turn; past that the
//! hasher answers [`OmsError::Unavailable`] at once instead of queueing
//! without bound.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use argon2::password_hash::phc;
use argon2::{Algorithm, Argon2, PasswordHasher as _, PasswordVerifier as _, Version};
use async_trait::async_trait;
use tokio::sync::Semaphore;

use crate::domain::{OmsError, OmsResult, PasswordHash};
use crate::port::outbound::PasswordHasher;

/// Argon2id cost parameters.
///
/// The default is the first recommendation of the OWASP Password Storage
/// Cheat Sheet: **m = 19 MiB (19,456 KiB), t = 2 iterations, p = 1 lane**,
/// with a 16-byte random salt and a 32-byte output, version 0x13. A hash
/// stores its parameters (PHC string), so hashes made with other parameters
/// keep verifying after a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Argon2Settings {
    /// Memory, in KiB (at least 8 × `p_cost`).
    pub m_cost_kib: u32,
    /// Iterations (at least 1).
    pub t_cost: u32,
    /// Lanes (at least 1).
    pub p_cost: u32,
}

impl Default for Argon2Settings {
    fn default() -> Self {
        Self {
            m_cost_kib: argon2::Params::DEFAULT_M_COST,
            t_cost: argon2::Params::DEFAULT_T_COST,
            p_cost: argon2::Params::DEFAULT_P_COST,
        }
    }
}

impl Argon2Settings {
    /// The cheapest parameters Argon2 accepts (8 KiB, 1 iteration): for
    /// tests only, never for stored passwords.
    pub fn insecure_fast() -> Self {
        Self {
            m_cost_kib: 8,
            t_cost: 1,
            p_cost: 1,
        }
    }
}

/// Argon2id on tokio's blocking pool, bounded (see the module docs).
#[derive(Debug, Clone)]
pub struct Argon2idHasher {
    argon2: Argon2<'static>,
    settings: Argon2Settings,
    permits: Arc<Semaphore>,
    concurrency: usize,
    max_waiting: usize,
    waiting: Arc<AtomicUsize>,
}

/// Counts a caller waiting for a turn, until it gets one or gives up.
struct Waiting(Arc<AtomicUsize>);

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Argon2idHasher {
    /// A hasher with the default parameters, as many hashes at once as the
    /// machine has cores, and up to 512 waiting.
    pub fn new() -> Self {
        Self::build(argon2::Params::default(), Argon2Settings::default())
    }

    fn build(params: argon2::Params, settings: Argon2Settings) -> Self {
        let concurrency = std::thread::available_parallelism()
            .map(std::num::NonZeroUsize::get)
            .unwrap_or(2);
        Self {
            argon2: Argon2::new(Algorithm::Argon2id, Version::V0x13, params),
            settings,
            permits: Arc::new(Semaphore::new(concurrency)),
            concurrency,
            max_waiting: 512,
            waiting: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// A hasher with these parameters; [`OmsError::Invalid`] if Argon2
    /// refuses them.
    pub fn with_settings(settings: Argon2Settings) -> OmsResult<Self> {
        let params = argon2::Params::new(
            settings.m_cost_kib,
            settings.t_cost,
            settings.p_cost,
            Some(argon2::Params::DEFAULT_OUTPUT_LEN),
        )
        .map_err(|e| OmsError::Invalid(format!("argon2 parameters: {e}")))?;
        Ok(Self::build(params, settings))
    }

    /// Sets how many hashes run at once (at least 1) and how many callers
    /// may wait for a turn.
    pub fn with_limits(mut self, concurrency: usize, max_waiting: usize) -> Self {
        self.concurrency = concurrency.max(1);
        self.permits = Arc::new(Semaphore::new(self.concurrency));
        self.max_waiting = max_waiting;
        self
    }

    /// The parameters new hashes are made with.
    pub fn settings(&self) -> Argon2Settings {
        self.settings
    }

    /// How many hashes run at once.
    pub fn concurrency(&self) -> usize {
        self.concurrency
    }

    /// How many callers may wait for a turn before the hasher refuses.
    pub fn max_waiting(&self) -> usize {
        self.max_waiting
    }

    async fn run<T, F>(&self, work: F) -> OmsResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Argon2<'static>) -> T + Send + 'static,
    {
        let queued = self.waiting.fetch_add(1, Ordering::AcqRel);
        let waiting = Waiting(self.waiting.clone());
        if queued >= self.max_waiting && self.permits.available_permits() == 0 {
            return Err(OmsError::unavailable(
                "password hashing",
                "too many logins and sign-ups at once",
            ));
        }
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| OmsError::Internal(format!("password hashing closed: {e}")))?;
        drop(waiting);
        let argon2 = self.argon2.clone();
        tokio::task::spawn_blocking(move || {
            let done = work(&argon2);
            drop(permit);
            done
        })
        .await
        .map_err(|e| OmsError::Internal(format!("password hashing task failed: {e}")))
    }
}

impl Default for Argon2idHasher {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl PasswordHasher for Argon2idHasher {
    async fn hash(&self, password: &str) -> OmsResult<PasswordHash> {
        let password = password.to_owned();
        self.run(move |argon2| {
            argon2
                .hash_password(password.as_bytes())
                .map(|h| PasswordHash::new(h.to_string()))
                .map_err(|e| OmsError::Internal(format!("argon2 could not hash: {e}")))
        })
        .await?
    }

    async fn verify(&self, password: &str, hash: &PasswordHash) -> OmsResult<bool> {
        let password = password.to_owned();
        let hash = hash.as_str().to_owned();
        self.run(move |argon2| match phc::PasswordHash::new(&hash) {
            Err(e) => {
                tracing::warn!(error = %e, "stored password hash is not a PHC string; it verifies nothing");
                false
            }
            Ok(parsed) => match argon2.verify_password(password.as_bytes(), &parsed) {
                Ok(()) => true,
                Err(argon2::password_hash::Error::PasswordInvalid) => false,
                Err(e) => {
                    tracing::warn!(error = %e, "stored password hash cannot be verified");
                    false
                }
            },
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_are_salted_argon2id_and_verify() {
        let hasher = Argon2idHasher::with_settings(Argon2Settings::insecure_fast()).unwrap();
        let a = hasher.hash("correct horse battery").await.unwrap();
        let b = hasher.hash("correct horse battery").await.unwrap();
        assert!(
            a.as_str().starts_with("$argon2id$v=19$m=8,t=1,p=1$"),
            "{a:?}"
        );
        assert_ne!(a, b, "a random salt per hash");
        assert!(hasher.verify("correct horse battery", &a).await.unwrap());
        assert!(!hasher.verify("correct horse batterY", &a).await.unwrap());
        assert!(!hasher.verify("", &a).await.unwrap());
        assert!(!hasher
            .verify("x", &PasswordHash::new("not a hash"))
            .await
            .unwrap());
    }

    #[tokio::test]
    async fn the_default_is_owasp_argon2id() {
        let hasher = Argon2idHasher::new();
        assert_eq!(
            hasher.settings(),
            Argon2Settings {
                m_cost_kib: 19 * 1024,
                t_cost: 2,
                p_cost: 1
            }
        );
        let h = hasher.hash("correct horse battery").await.unwrap();
        assert!(h.as_str().starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        // A hash keeps its parameters: a hasher with others still verifies it.
        let fast = Argon2idHasher::with_settings(Argon2Settings::insecure_fast()).unwrap();
        assert!(fast.verify("correct horse battery", &h).await.unwrap());
    }

    #[tokio::test]
    async fn parameters_argon2_refuses_are_invalid() {
        let bad = Argon2Settings {
            m_cost_kib: 1,
            t_cost: 1,
            p_cost: 1,
        };
        assert!(matches!(
            Argon2idHasher::with_settings(bad),
            Err(OmsError::Invalid(_))
        ));
    }

    #[tokio::test]
    async fn a_full_queue_is_refused_at_once() {
        let hasher = Argon2idHasher::with_settings(Argon2Settings::insecure_fast())
            .unwrap()
            .with_limits(1, 0);
        // Hold the only turn, so the next caller would have to wait.
        let held = hasher.permits.clone().acquire_owned().await.unwrap();
        let refused = hasher.hash("correct horse battery").await;
        assert!(
            matches!(refused, Err(OmsError::Unavailable { .. })),
            "{refused:?}"
        );
        drop(held);
        assert!(hasher.hash("correct horse battery").await.is_ok());
        assert_eq!(hasher.waiting.load(Ordering::Acquire), 0);
    }
}

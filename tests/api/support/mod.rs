//! What the black-box tests stand on: the shared services and a fresh
//! database per test (`services`), Coop in-process (`app`) or as processes
//! (`process`), polling (`poll`), and real protocol peers standing in for the
//! outside world (`fakes`: an SMTP server, a payment provider).

pub mod app;
#[cfg(feature = "full-suite")]
pub mod browser;
pub mod fakes;
pub mod poll;
pub mod process;
pub mod seaweed;
pub mod services;

pub use app::*;
pub use poll::*;
pub use process::*;
pub use services::*;

/// Runs an `async fn(Tier)` test once per tier.
#[macro_export]
macro_rules! both_tiers {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::support::Tier::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name($crate::support::Tier::Postgres).await
            }
        }
    )*};
}

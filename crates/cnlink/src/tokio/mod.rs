//! Async drivers on tokio (feature `tokio`): the same engines as the blocking ones, on an `AsyncFd`.
//!
//! ```no_run
//! # async fn run() -> Result<(), cnlink::Error> {
//! use cnlink::proc::{ProcItem, ProcOptions};
//! use cnlink::tokio::ProcStream;
//!
//! let mut events = ProcStream::subscribe(ProcOptions::default()).await?;
//! let mut items = Vec::new();
//! while events.recv_items(&mut items).await? > 0 {
//!     for item in items.drain(..) {
//!         if let ProcItem::Event(ev) = item {
//!             println!("{:?}", ev.data);
//!         }
//!     }
//! }
//! # Ok(()) }
//! ```

mod connector;
mod proc_stream;

pub use connector::AsyncConnector;
pub use proc_stream::ProcStream;

//! Where events go besides the terminal. One transport-independent pipeline (queue → batcher →
//! write-ahead spool → ordered delivery with retry) and one small module per transport.

/// The batch body every transport carries.
pub mod batch;
/// The spool's own thread: all file I/O of the sink.
mod disk;
/// HTTP POST transport and its handle.
pub mod http;
/// NATS JetStream transport and its handle.
pub mod nats;
/// The transport-independent sink.
pub mod pipeline;
/// The on-disk queue of batches.
pub mod spool;
/// Crash counters and the `seq` high-water mark.
mod state;
/// What a transport provides to the pipeline.
pub mod transport;

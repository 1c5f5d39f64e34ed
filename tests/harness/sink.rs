//! What the sink tests look at besides the service: the sink's messages and its spool.

use std::{
    path::Path,
    sync::{Arc, Mutex},
};

use mapscope::sinks::pipeline::Reporter;

/// The sink's messages, collected (and echoed to the test's output).
#[derive(Clone, Default)]
pub struct Messages(Arc<Mutex<Vec<String>>>);

impl Messages {
    /// A reporter to start a sink with.
    pub fn reporter(&self) -> Reporter {
        let m = Arc::clone(&self.0);
        Arc::new(move |s| {
            eprintln!("sink: {s}");
            m.lock().unwrap().push(s.to_string());
        })
    }

    pub fn all(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }

    /// How many messages contain `needle`.
    pub fn count(&self, needle: &str) -> usize {
        self.all().iter().filter(|m| m.contains(needle)).count()
    }

    pub fn any(&self, needle: &str) -> bool {
        self.count(needle) > 0
    }
}

/// Batch files waiting in a spool directory (not the lock file or anything else there).
pub fn spooled_batches(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".json")
        })
        .count()
}

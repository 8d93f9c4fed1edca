//! Spans exported in-process, for assertions.

use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SpanData, SpanExporter};
use std::sync::{Arc, Mutex};

/// The SDK's in-memory exporter clears its spans on shutdown (keeping them is test-only inside
/// the SDK); this wrapper keeps them through telemetry shutdown (which flushes them), and
/// records the resource the provider hands down.
#[derive(Debug, Clone, Default)]
pub struct Keep {
    mem: InMemorySpanExporter,
    resource: Arc<Mutex<Option<Resource>>>,
}

impl Keep {
    pub fn get_finished_spans(&self) -> Result<Vec<SpanData>, OTelSdkError> {
        self.mem.get_finished_spans()
    }

    /// The resource the tracer provider set, if it did.
    pub fn resource(&self) -> Option<Resource> {
        self.resource.lock().unwrap().clone()
    }
}

impl SpanExporter for Keep {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        self.mem.export(batch).await
    }
    fn set_resource(&mut self, resource: &Resource) {
        *self.resource.lock().unwrap() = Some(resource.clone());
    }
}

/// A span attribute's value as text.
pub fn attr(s: &SpanData, key: &str) -> Option<String> {
    s.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.to_string())
}

//! Storage in memory, for tests and for trying the engine without a disk.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use super::{check_range, BufferWriter, ObjectInfo, ObjectKind, ObjectWriter, Storage};
use crate::error::{Error, Result};

type Objects = BTreeMap<(ObjectKind, String), Arc<Vec<u8>>>;

#[derive(Default, Clone)]
pub struct MemoryStorage {
    objects: Arc<Mutex<Objects>>,
}

impl MemoryStorage {
    pub fn new() -> MemoryStorage {
        MemoryStorage::default()
    }

    fn lock(&self) -> MutexGuard<'_, Objects> {
        // A poisoned map is still a consistent map: every mutation is one insert or remove.
        self.objects.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Replace an object's bytes in place, bypassing immutability: for
    /// corruption tests.
    pub fn tamper(&self, kind: ObjectKind, name: &str, f: impl FnOnce(&mut Vec<u8>)) {
        let mut map = self.lock();
        if let Some(data) = map.get_mut(&(kind, name.to_string())) {
            f(Arc::make_mut(data));
        }
    }

    fn get(&self, kind: ObjectKind, name: &str) -> Result<Arc<Vec<u8>>> {
        self.lock()
            .get(&(kind, name.to_string()))
            .cloned()
            .ok_or_else(|| Error::missing(format!("{} does not exist", kind.path_of(name))))
    }
}

impl Storage for MemoryStorage {
    fn location(&self) -> String {
        "memory".into()
    }

    fn create(&self) -> Result<()> {
        Ok(())
    }

    fn list(&self, kind: ObjectKind) -> Result<Vec<ObjectInfo>> {
        Ok(self
            .lock()
            .iter()
            .filter(|((k, _), _)| *k == kind)
            .map(|((_, name), data)| ObjectInfo {
                name: name.clone(),
                size: data.len() as u64,
            })
            .collect())
    }

    fn read(&self, kind: ObjectKind, name: &str) -> Result<Vec<u8>> {
        Ok(self.get(kind, name)?.as_ref().clone())
    }

    fn read_range(
        &self,
        kind: ObjectKind,
        name: &str,
        offset: u64,
        length: u64,
    ) -> Result<Vec<u8>> {
        let data = self.get(kind, name)?;
        let start = (offset as usize).min(data.len());
        let end = (offset.saturating_add(length) as usize).min(data.len());
        let out = data[start..end].to_vec();
        check_range(out.len(), name, offset, length)?;
        Ok(out)
    }

    fn write(&self, kind: ObjectKind, name: &str, data: &[u8]) -> Result<()> {
        self.lock()
            .insert((kind, name.to_string()), Arc::new(data.to_vec()));
        Ok(())
    }

    fn remove(&self, kind: ObjectKind, name: &str) -> Result<()> {
        self.lock().remove(&(kind, name.to_string()));
        Ok(())
    }

    fn create_writer(&self, kind: ObjectKind) -> Result<Box<dyn ObjectWriter>> {
        let me = self.clone();
        Ok(Box::new(BufferWriter::new(
            move |name: &str, data: Vec<u8>| me.write(kind, name, &data),
        )))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn conformance() {
        crate::storage::conformance::run(&super::MemoryStorage::new());
    }
}

//! rootd's table of child partitions, by name and by hypervisor ID.

use std::collections::BTreeMap;

use hypercall::PartitionId;

use crate::config::PartitionConfig;
use crate::console::ConsoleBuffer;
use crate::protocol::{PartitionState, PartitionSummary};
use crate::stop::StopReason;

/// One child partition rootd created.
#[derive(Clone, Debug)]
pub struct Entry {
    /// Hypervisor ID.
    pub id: PartitionId,
    /// Its configuration.
    pub config: PartitionConfig,
    /// Lifecycle state.
    pub state: PartitionState,
    /// Why it stopped (in [`PartitionState::Stopped`]).
    pub reason: Option<StopReason>,
    /// Its console output.
    pub console: ConsoleBuffer,
}

impl Entry {
    /// A freshly loaded partition.
    #[must_use]
    pub fn new(id: PartitionId, config: PartitionConfig) -> Self {
        Self {
            id,
            config,
            state: PartitionState::Created,
            reason: None,
            console: ConsoleBuffer::new(),
        }
    }

    /// Its summary for replies.
    #[must_use]
    pub fn summary(&self) -> PartitionSummary {
        PartitionSummary {
            id: self.id.0,
            name: self.config.name.clone(),
            state: self.state,
            memory: self.config.memory,
            reason: self.reason,
            console_bytes: self.console.end(),
        }
    }
}

/// Why an entry was not added.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// The name is taken.
    #[error("A partition named {0:?} already exists")]
    DuplicateName(String),
    /// The ID is taken (the hypervisor reused an ID: a bug somewhere).
    #[error("Partition ID {0} is already registered")]
    DuplicateId(u64),
}

/// Partitions by name, with lookup by ID.
#[derive(Clone, Debug, Default)]
pub struct Registry {
    by_name: BTreeMap<String, Entry>,
    names_by_id: BTreeMap<u64, String>,
}

impl Registry {
    /// An empty registry.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether `name` is taken.
    #[must_use]
    pub fn contains(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    /// Adds `entry`.
    ///
    /// # Errors
    /// The name or the ID is taken.
    pub fn insert(&mut self, entry: Entry) -> Result<(), RegistryError> {
        if self.by_name.contains_key(&entry.config.name) {
            return Err(RegistryError::DuplicateName(entry.config.name));
        }
        if self.names_by_id.contains_key(&entry.id.0) {
            return Err(RegistryError::DuplicateId(entry.id.0));
        }
        self.names_by_id
            .insert(entry.id.0, entry.config.name.clone());
        self.by_name.insert(entry.config.name.clone(), entry);
        Ok(())
    }

    /// The entry named `name`.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&Entry> {
        self.by_name.get(name)
    }

    /// The entry named `name`, mutably.
    pub fn get_mut(&mut self, name: &str) -> Option<&mut Entry> {
        self.by_name.get_mut(name)
    }

    /// The entry with hypervisor ID `id`, mutably.
    pub fn by_id_mut(&mut self, id: PartitionId) -> Option<&mut Entry> {
        let name = self.names_by_id.get(&id.0)?;
        self.by_name.get_mut(name)
    }

    /// Removes the entry named `name`.
    pub fn remove(&mut self, name: &str) -> Option<Entry> {
        let entry = self.by_name.remove(name)?;
        self.names_by_id.remove(&entry.id.0);
        Some(entry)
    }

    /// Every entry, ordered by ID.
    #[must_use]
    pub fn by_id(&self) -> Vec<&Entry> {
        self.names_by_id
            .values()
            .filter_map(|name| self.by_name.get(name))
            .collect()
    }

    /// IDs of the entries in `state`.
    #[must_use]
    pub fn ids_in(&self, state: PartitionState) -> Vec<PartitionId> {
        self.by_id()
            .into_iter()
            .filter(|e| e.state == state)
            .map(|e| e.id)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn entry(id: u64, name: &str) -> Entry {
        Entry::new(
            PartitionId(id),
            PartitionConfig {
                name: name.into(),
                image: PathBuf::from("/x"),
                memory: 4 << 20,
                args: String::new(),
                vcpus: 1,
            },
        )
    }

    #[test]
    fn names_and_ids_are_unique_and_removal_frees_both() {
        let mut registry = Registry::new();
        registry.insert(entry(3, "b")).unwrap();
        registry.insert(entry(2, "a")).unwrap();
        assert_eq!(
            registry.insert(entry(4, "a")),
            Err(RegistryError::DuplicateName("a".into()))
        );
        assert_eq!(
            registry.insert(entry(2, "c")),
            Err(RegistryError::DuplicateId(2))
        );
        let order: Vec<_> = registry.by_id().iter().map(|e| e.id.0).collect();
        assert_eq!(order, [2, 3]);
        assert_eq!(registry.by_id_mut(PartitionId(3)).unwrap().config.name, "b");
        registry.get_mut("b").unwrap().state = PartitionState::Running;
        assert_eq!(registry.ids_in(PartitionState::Running), [PartitionId(3)]);
        assert!(registry.remove("b").is_some());
        assert!(registry.by_id_mut(PartitionId(3)).is_none());
        assert!(!registry.contains("b"));
        registry.insert(entry(3, "b")).unwrap();
        assert!(registry.remove("zzz").is_none());
    }
}

//! The agents, in a slab with a uuid index: an open connection names its
//! agent by an 8-byte [`AgentRef`] (slot and generation), not by its
//! 33-byte uuid, so a connection entry stays small (issue 12: idle bytes
//! per connection); the index keeps lookups by uuid and the uuid order
//! every listing uses.
//!
//! A slot is reused once its agent is forgotten; its generation moves on,
//! so a connection still naming the old agent finds nothing rather than
//! the slot's next tenant.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::ops::RangeBounds;

use super::Agent;
use crate::proto::Uuid;

/// Names an agent's slot as it was when the reference was taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AgentRef {
    index: u32,
    /// Non-zero so that `Option<AgentRef>` is 8 bytes.
    generation: NonZeroU32,
}

/// One place in the slab.
#[derive(Debug)]
struct Slot {
    generation: NonZeroU32,
    /// Boxed: a free slot costs a pointer, not a whole `Agent`.
    agent: Option<Box<Agent>>,
}

/// Every agent, by uuid and by [`AgentRef`].
#[derive(Debug, Default)]
pub struct Agents {
    index: BTreeMap<Uuid, u32>,
    slots: Vec<Slot>,
    /// Slots whose agent was forgotten, for the next new one.
    free: Vec<u32>,
}

impl Agents {
    /// The agent with `uuid`.
    pub fn get(&self, uuid: &Uuid) -> Option<&Agent> {
        let i = *self.index.get(uuid)?;
        self.slot_agent(i)
    }

    /// The agent with `uuid`, to change.
    pub fn get_mut(&mut self, uuid: &Uuid) -> Option<&mut Agent> {
        let i = *self.index.get(uuid)?;
        self.slots.get_mut(i as usize)?.agent.as_deref_mut()
    }

    /// Whether an agent has `uuid`.
    pub fn contains_key(&self, uuid: &Uuid) -> bool {
        self.index.contains_key(uuid)
    }

    /// How to name the agent with `uuid` from a connection.
    pub fn ref_of(&self, uuid: &Uuid) -> Option<AgentRef> {
        let i = *self.index.get(uuid)?;
        let s = self.slots.get(i as usize)?;
        Some(AgentRef {
            index: i,
            generation: s.generation,
        })
    }

    /// The agent `r` names, if it is still the slot's.
    pub fn by_ref(&self, r: AgentRef) -> Option<&Agent> {
        let s = self.slots.get(r.index as usize)?;
        (s.generation == r.generation)
            .then_some(s.agent.as_deref())
            .flatten()
    }

    /// The agent `r` names, to change, if it is still the slot's.
    pub fn by_ref_mut(&mut self, r: AgentRef) -> Option<&mut Agent> {
        let s = self.slots.get_mut(r.index as usize)?;
        if s.generation != r.generation {
            return None;
        }
        s.agent.as_deref_mut()
    }

    /// The agent with `uuid`, made by `new` if there is none yet, and how
    /// to name it. `None` only with 2³² agents.
    pub fn get_or_insert_with(
        &mut self,
        uuid: Uuid,
        new: impl FnOnce() -> Agent,
    ) -> Option<(AgentRef, &mut Agent)> {
        let r = match self.ref_of(&uuid) {
            Some(r) => r,
            None => {
                let agent = Some(Box::new(new()));
                let index = match self.free.pop() {
                    Some(i) => {
                        let s = self.slots.get_mut(i as usize)?;
                        s.agent = agent;
                        i
                    }
                    None => {
                        let i = u32::try_from(self.slots.len()).ok()?;
                        self.slots.push(Slot {
                            generation: NonZeroU32::MIN,
                            agent,
                        });
                        i
                    }
                };
                self.index.insert(uuid, index);
                self.ref_of(&uuid)?
            }
        };
        let a = self.by_ref_mut(r)?;
        Some((r, a))
    }

    /// Takes the agent with `uuid` out; its slot is free for another.
    pub fn remove(&mut self, uuid: &Uuid) -> Option<Box<Agent>> {
        let i = self.index.remove(uuid)?;
        let s = self.slots.get_mut(i as usize)?;
        let a = s.agent.take();
        // A slot that went round all generations is retired rather than
        // reused: a stale reference must never match again.
        if let Some(g) = s.generation.checked_add(1) {
            s.generation = g;
            self.free.push(i);
        }
        a
    }

    /// Every agent, by uuid.
    pub fn values(&self) -> impl Iterator<Item = &Agent> {
        self.index.values().filter_map(|&i| self.slot_agent(i))
    }

    /// Every uuid, in order.
    pub fn keys(&self) -> impl Iterator<Item = &Uuid> {
        self.index.keys()
    }

    /// The agents whose uuids fall in `range`, by uuid.
    pub fn range<R: RangeBounds<Uuid>>(&self, range: R) -> impl Iterator<Item = &Agent> {
        self.index
            .range(range)
            .filter_map(|(_, &i)| self.slot_agent(i))
    }

    fn slot_agent(&self, i: u32) -> Option<&Agent> {
        self.slots.get(i as usize)?.agent.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn agent(name: &str) -> (Uuid, Agent) {
        let u = Uuid::from_text(name).unwrap();
        (u, Agent::new(u, Arc::from("")))
    }

    #[test]
    fn a_reused_slot_does_not_answer_to_its_old_agents_references() {
        let mut agents = Agents::default();
        let (a, new_a) = agent("a");
        let (b, new_b) = agent("b");
        let ra = agents.get_or_insert_with(a, || new_a).unwrap().0;
        assert_eq!(agents.by_ref(ra).map(|x| x.uuid), Some(a));
        assert!(agents.remove(&a).is_some());
        assert!(agents.by_ref(ra).is_none());
        // "b" takes the freed slot under a new generation.
        let rb = agents.get_or_insert_with(b, || new_b).unwrap().0;
        assert_eq!(rb.index, ra.index);
        assert!(agents.by_ref(ra).is_none());
        assert!(agents.by_ref_mut(ra).is_none());
        assert_eq!(agents.by_ref(rb).map(|x| x.uuid), Some(b));
        assert!(agents.get(&a).is_none());
        assert_eq!(agents.keys().collect::<Vec<_>>(), [&b]);
    }

    #[test]
    fn agents_are_listed_in_uuid_order_whatever_their_slots() {
        let mut agents = Agents::default();
        for name in ["c", "a", "d", "b"] {
            let (u, new) = agent(name);
            agents.get_or_insert_with(u, || new).unwrap();
        }
        // Free "a"'s slot, then fill it with "e".
        agents.remove(&Uuid::from_text("a").unwrap());
        let (e, new_e) = agent("e");
        agents.get_or_insert_with(e, || new_e).unwrap();
        let names: Vec<String> = agents.values().map(|a| a.uuid.to_string()).collect();
        assert_eq!(names, ["b", "c", "d", "e"]);
        let from_c: Vec<String> = agents
            .range(Uuid::from_text("c").unwrap()..)
            .map(|a| a.uuid.to_string())
            .collect();
        assert_eq!(from_c, ["c", "d", "e"]);
    }
}

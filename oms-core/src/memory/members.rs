use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::Utc;

use super::lock;
use crate::domain::{Email, Member, MemberId, NewMember, OmsError, OmsResult, PasswordHash, Role};
use crate::port::outbound::MemberStore;

#[derive(Debug, Default)]
struct State {
    members: BTreeMap<MemberId, Member>,
    by_email: HashMap<Email, MemberId>,
    last_id: u64,
}

/// A [`MemberStore`] in maps; ids count from 1.
#[derive(Debug, Default)]
pub struct InMemoryMemberStore {
    state: Mutex<State>,
}

impl InMemoryMemberStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many members it holds.
    pub fn len(&self) -> usize {
        lock(&self.state).members.len()
    }

    /// Whether it holds no member.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl MemberStore for InMemoryMemberStore {
    async fn create(&self, member: &NewMember) -> OmsResult<Member> {
        let mut state = lock(&self.state);
        if state.by_email.contains_key(&member.email) {
            return Err(OmsError::EmailTaken);
        }
        state.last_id += 1;
        let stored = Member {
            id: MemberId(state.last_id),
            email: member.email.clone(),
            name: member.name.clone(),
            role: member.role,
            password_hash: member.password_hash.clone(),
            created_at: Utc::now(),
        };
        state.by_email.insert(stored.email.clone(), stored.id);
        state.members.insert(stored.id, stored.clone());
        Ok(stored)
    }

    async fn get(&self, member_id: MemberId) -> OmsResult<Option<Member>> {
        Ok(lock(&self.state).members.get(&member_id).cloned())
    }

    async fn find_by_email(&self, email: &Email) -> OmsResult<Option<Member>> {
        let state = lock(&self.state);
        Ok(state
            .by_email
            .get(email)
            .and_then(|id| state.members.get(id))
            .cloned())
    }

    async fn set_credentials(
        &self,
        member_id: MemberId,
        role: Role,
        password_hash: &PasswordHash,
    ) -> OmsResult<()> {
        let mut state = lock(&self.state);
        let member = state
            .members
            .get_mut(&member_id)
            .ok_or(OmsError::MemberNotFound { member_id })?;
        member.role = role;
        member.password_hash = password_hash.clone();
        Ok(())
    }
}

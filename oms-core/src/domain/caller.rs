//! Who is calling: the member and its role.

use serde::{Deserialize, Serialize};

use super::{MemberId, OmsError, OmsResult};

/// A member's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Role {
    /// A buyer.
    User,
    /// An operator: manages products, reads every order.
    Admin,
}

super::wire::wire_names!(Role, "role", {
    User => "USER",
    Admin => "ADMIN",
});

/// The authenticated caller of a use case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    /// Who.
    pub member_id: MemberId,
    /// With which role.
    pub role: Role,
}

impl Caller {
    /// A buyer.
    pub fn user(member_id: u64) -> Self {
        Self {
            member_id: MemberId(member_id),
            role: Role::User,
        }
    }

    /// An operator.
    pub fn admin(member_id: u64) -> Self {
        Self {
            member_id: MemberId(member_id),
            role: Role::Admin,
        }
    }

    /// Whether the caller is an operator.
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// Whether the caller may read what `owner` owns.
    pub fn can_read(&self, owner: MemberId) -> bool {
        self.is_admin() || self.member_id == owner
    }

    /// Fails with [`OmsError::Forbidden`] unless the caller is an operator.
    pub fn require_admin(&self) -> OmsResult<()> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(OmsError::Forbidden("this needs the ADMIN role".into()))
        }
    }
}

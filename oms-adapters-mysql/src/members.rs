use async_trait::async_trait;
use chrono::{NaiveDateTime, SubsecRound, Utc};
use oms_core::domain::{
    Email, Member, MemberId, NewMember, OmsError, OmsResult, PasswordHash, Role,
};
use oms_core::port::outbound::MemberStore;

use crate::error::{db_error, is_unique_violation};
use crate::{sql_id, MySqlStore};

/// Email, role and hash are ASCII columns with a binary collation, which
/// MySQL reports as binary: they are read as bytes.
type MemberRow = (i64, Vec<u8>, String, Vec<u8>, Vec<u8>, NaiveDateTime);

const COLUMNS: &str = "id, email, name, role, password_hash, created_at";

fn member_of(row: MemberRow) -> OmsResult<Member> {
    let (id, email, name, role, hash, created_at) = row;
    let text = |bytes: Vec<u8>, what: &str| {
        String::from_utf8(bytes)
            .map_err(|_| OmsError::Internal(format!("member {id} has a {what} that is not text")))
    };
    let (email, role, hash) = (
        text(email, "email")?,
        text(role, "role")?,
        text(hash, "password hash")?,
    );
    let role: Role = role
        .parse()
        .map_err(|e| OmsError::Internal(format!("member {id} has a role it cannot have: {e}")))?;
    let email = Email::parse(&email)
        .map_err(|e| OmsError::Internal(format!("member {id} has an unusable email: {e}")))?;
    Ok(Member {
        id: MemberId(id.unsigned_abs()),
        email,
        name,
        role,
        password_hash: PasswordHash::new(hash),
        created_at: created_at.and_utc(),
    })
}

#[async_trait]
impl MemberStore for MySqlStore {
    async fn create(&self, member: &NewMember) -> OmsResult<Member> {
        // Microseconds, as DATETIME(6) keeps them.
        let now = Utc::now().naive_utc().trunc_subsecs(6);
        let inserted = sqlx::query(
            "INSERT INTO members (email, name, role, password_hash, created_at) \
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(member.email.as_str())
        .bind(&member.name)
        .bind(member.role.as_str())
        .bind(member.password_hash.as_str())
        .bind(now)
        .execute(self.pool())
        .await;
        match inserted {
            Ok(done) => Ok(Member {
                id: MemberId(done.last_insert_id()),
                email: member.email.clone(),
                name: member.name.clone(),
                role: member.role,
                password_hash: member.password_hash.clone(),
                created_at: now.and_utc(),
            }),
            Err(e) if is_unique_violation(&e) => Err(OmsError::EmailTaken),
            Err(e) => Err(db_error(e)),
        }
    }

    async fn get(&self, member_id: MemberId) -> OmsResult<Option<Member>> {
        let row: Option<MemberRow> =
            sqlx::query_as(&format!("SELECT {COLUMNS} FROM members WHERE id = ?"))
                .bind(sql_id(member_id.0))
                .fetch_optional(self.pool())
                .await
                .map_err(db_error)?;
        row.map(member_of).transpose()
    }

    async fn find_by_email(&self, email: &Email) -> OmsResult<Option<Member>> {
        let row: Option<MemberRow> =
            sqlx::query_as(&format!("SELECT {COLUMNS} FROM members WHERE email = ?"))
                .bind(email.as_str())
                .fetch_optional(self.pool())
                .await
                .map_err(db_error)?;
        row.map(member_of).transpose()
    }

    async fn set_credentials(
        &self,
        member_id: MemberId,
        role: Role,
        password_hash: &PasswordHash,
    ) -> OmsResult<()> {
        let done = sqlx::query("UPDATE members SET role = ?, password_hash = ? WHERE id = ?")
            .bind(role.as_str())
            .bind(password_hash.as_str())
            .bind(sql_id(member_id.0))
            .execute(self.pool())
            .await
            .map_err(db_error)?;
        if done.rows_affected() == 0 && self.get(member_id).await?.is_none() {
            return Err(OmsError::MemberNotFound { member_id });
        }
        Ok(())
    }
}

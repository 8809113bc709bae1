use std::sync::Arc;

use async_trait::async_trait;

use crate::domain::{Caller, OmsError, OmsResult, RoomStatus};
use crate::port::inbound::WaitingRoomUseCase;
use crate::port::outbound::WaitingRoom;

/// The waiting room use cases on a [`WaitingRoom`], or on none (the room is
/// off: every call answers [`OmsError::WaitingRoomOff`]).
pub struct WaitingRoomService {
    room: Option<Arc<dyn WaitingRoom>>,
}

impl WaitingRoomService {
    /// A service on `room`.
    pub fn new(room: Arc<dyn WaitingRoom>) -> Self {
        Self { room: Some(room) }
    }

    /// The service of a sale without a waiting room.
    pub fn off() -> Self {
        Self { room: None }
    }

    fn room(&self) -> OmsResult<&dyn WaitingRoom> {
        self.room.as_deref().ok_or(OmsError::WaitingRoomOff)
    }
}

#[async_trait]
impl WaitingRoomUseCase for WaitingRoomService {
    async fn enter(&self, caller: Caller) -> OmsResult<RoomStatus> {
        self.room()?.enter(caller.member_id).await
    }

    async fn status(&self, caller: Caller) -> OmsResult<RoomStatus> {
        self.room()?
            .status(caller.member_id)
            .await?
            .ok_or(OmsError::NotInWaitingRoom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::RoomPolicy;
    use crate::memory::InMemoryWaitingRoom;

    #[tokio::test]
    async fn members_enter_and_see_where_they_stand() {
        let service =
            WaitingRoomService::new(Arc::new(InMemoryWaitingRoom::new(RoomPolicy::default())));
        assert!(matches!(
            service.status(Caller::user(1)).await,
            Err(OmsError::NotInWaitingRoom)
        ));
        let entered = service.enter(Caller::user(1)).await.unwrap();
        assert_eq!(service.status(Caller::user(1)).await.unwrap(), entered);
        let off = WaitingRoomService::off();
        assert!(matches!(
            off.enter(Caller::user(1)).await,
            Err(OmsError::WaitingRoomOff)
        ));
    }
}

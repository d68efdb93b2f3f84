//! K3s's servers as Foundry reads them over SSH: the embedded etcd's membership.

mod etcd;

pub use etcd::{
    ETCD_TLS_DIR, EtcdMember, EtcdMemberGone, EtcdMemberGoneOutput, EtcdMembers, EtcdMembersOutput,
    EtcdVoter, EtcdVoterOutput, etcd_members, member_node, remove_member,
};

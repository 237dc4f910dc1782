// ipc_var_entry's fields (ipcns-var-ID.img) and the sysctl under /proc/sys each one mirrors in its
// IPC namespace; sem_ctls is kernel/sem's four numbers. The dump reads them, the restore writes
// them back, each from inside the namespace.
export const IPC_SYSCTLS = [
  ['msg_ctlmax', 'kernel/msgmax'],
  ['msg_ctlmnb', 'kernel/msgmnb'],
  ['msg_ctlmni', 'kernel/msgmni'],
  ['auto_msgmni', 'kernel/auto_msgmni'],
  ['shm_ctlmax', 'kernel/shmmax'],
  ['shm_ctlall', 'kernel/shmall'],
  ['shm_ctlmni', 'kernel/shmmni'],
  ['shm_rmid_forced', 'kernel/shm_rmid_forced'],
  ['mq_queues_max', 'fs/mqueue/queues_max'],
  ['mq_msg_max', 'fs/mqueue/msg_max'],
  ['mq_msgsize_max', 'fs/mqueue/msgsize_max'],
  ['mq_msg_default', 'fs/mqueue/msg_default'],
  ['mq_msgsize_default', 'fs/mqueue/msgsize_default'],
  ['msg_next_id', 'kernel/msg_next_id'],
  ['sem_next_id', 'kernel/sem_next_id'],
  ['shm_next_id', 'kernel/shm_next_id'],
] as const;

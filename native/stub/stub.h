/*
 * The remote-syscall stub's layout: the one contract shared by the stub (stub.S), the tracer
 * (native/addon) and the helper that maps the scratch area (native/helper). Included from
 * assembly too, so everything outside the __ASSEMBLER__ guard is plain #defines.
 *
 * Scratch area (CRR_STUB_SCRATCH_SIZE bytes, mapped RWX at an address free in the target's
 * layout, stub.bin copied to its start):
 *
 *   0x00000  code: entry A (batch) at CRR_STUB_ENTRY_BATCH, entry B (`syscall; int3`) at
 *            CRR_STUB_ENTRY_SYSCALL; CRR_STUB_CODE_SIZE bytes reserved
 *   0x00080  list header (struct crr_stub_header, CRR_STUB_HEADER_SIZE bytes)
 *   0x000c0  commands (struct crr_stub_cmd, CRR_STUB_CMD_SIZE bytes each), at most
 *            CRR_STUB_MAX_COMMANDS of them
 *   0x49000  data: free for the caller (iovecs, paths, structs the commands point to),
 *            up to the end of the scratch area
 *
 * Entry A registers on entry: r12 = address of the list header (normally scratch + 0x80).
 * The stub never touches the stack or memory outside the list, so it keeps running while
 * every other mapping of the task is unmapped and replaced. It uses r12..r15 and clobbers
 * rax rcx r11 (syscall) and rdi rsi rdx r10 r8 r9 (arguments). It ends with int3: the tracer
 * sees SIGTRAP with rip == scratch + CRR_STUB_BATCH_TRAP_END (the byte after the int3).
 *
 * Entry B: rax = nr, rdi rsi rdx r10 r8 r9 = args; runs `syscall; int3`, so the trap comes with
 * rip == scratch + CRR_STUB_SYSCALL_TRAP_END. Used with PTRACE_SYSCALL to stop at syscall exit.
 */
#ifndef CRR_STUB_H
#define CRR_STUB_H

#define CRR_STUB_ENTRY_BATCH      0x00
#define CRR_STUB_ENTRY_SYSCALL    0x60
#define CRR_STUB_BATCH_TRAP_END   0x5c /* rip after the batch entry's int3 (checked by stub.S) */
#define CRR_STUB_SYSCALL_TRAP_END (CRR_STUB_ENTRY_SYSCALL + 3)
#define CRR_STUB_CODE_SIZE        0x80

#define CRR_STUB_HEADER_OFFSET    CRR_STUB_CODE_SIZE
#define CRR_STUB_HEADER_SIZE      0x40
#define CRR_STUB_CMDS_OFFSET      (CRR_STUB_HEADER_OFFSET + CRR_STUB_HEADER_SIZE)
#define CRR_STUB_CMD_SIZE         72
#define CRR_STUB_MAX_COMMANDS     4096
#define CRR_STUB_DATA_OFFSET      0x49000 /* page-aligned end of the largest command list */
#define CRR_STUB_SCRATCH_SIZE     0x100000 /* 1 MiB: ~732 KiB of data area */

/* struct crr_stub_header field offsets */
#define CRR_STUB_HDR_COUNT        0  /* u64, written by the tracer: commands in the list */
#define CRR_STUB_HDR_EXECUTED     8  /* u64, written by the stub after every command */

/* struct crr_stub_cmd field offsets */
#define CRR_STUB_CMD_NR           0
#define CRR_STUB_CMD_ARGS         8  /* six u64: rdi rsi rdx r10 r8 r9 */
#define CRR_STUB_CMD_FLAGS        56
#define CRR_STUB_CMD_RESULT       64 /* i64 rax after the syscall, written by the stub */

/* Command flags */
#define CRR_STUB_STOP_ON_ERROR    0x1 /* stop the list if this result is in [-4095, -1] */
/* A clone3 whose new thread runs the list at args[2] (ignored by clone3) instead of going on
 * with its parent's; that list must never end (its last command blocks: the thread is untraced
 * and the end's int3 would kill the process). */
#define CRR_STUB_CLONE_CHILD_LIST 0x2

#ifndef __ASSEMBLER__
#include <stdint.h>

#ifdef __cplusplus
#define CRR_STUB_STATIC_ASSERT static_assert
#else
#define CRR_STUB_STATIC_ASSERT _Static_assert
#endif

struct crr_stub_header {
  uint64_t count;
  uint64_t executed;
  uint64_t reserved[6];
};

struct crr_stub_cmd {
  uint64_t nr;
  uint64_t args[6];
  uint64_t flags;
  int64_t result;
};

CRR_STUB_STATIC_ASSERT(sizeof(struct crr_stub_header) == CRR_STUB_HEADER_SIZE, "stub header size");
CRR_STUB_STATIC_ASSERT(sizeof(struct crr_stub_cmd) == CRR_STUB_CMD_SIZE, "stub command size");
CRR_STUB_STATIC_ASSERT(CRR_STUB_CMDS_OFFSET + CRR_STUB_MAX_COMMANDS * CRR_STUB_CMD_SIZE <=
                   CRR_STUB_DATA_OFFSET,
               "command list overlaps the data area");
#endif

#endif

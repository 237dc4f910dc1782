/*
 * The remote-syscall stub: position-independent x86-64 code copied into a task's scratch area
 * and driven by the tracer. Layout, registers and the command struct are in stub.h.
 * No stack, no memory but the list: it survives the swap of the whole address space around it.
 * r12..r15 hold its state because syscall clobbers only rax, rcx and r11 besides the args.
 */
#include "stub.h"

	.text
	.globl crr_stub_start
crr_stub_start:
/* Entry A: run the command list at r12. r13 = next command, r14 = commands left, r15 = done. */
	movq	CRR_STUB_HDR_COUNT(%r12), %r14
	leaq	CRR_STUB_HEADER_SIZE(%r12), %r13
	xorl	%r15d, %r15d
	movq	%r15, CRR_STUB_HDR_EXECUTED(%r12)
1:
	testq	%r14, %r14
	jz	2f
	movq	CRR_STUB_CMD_NR(%r13), %rax
	movq	CRR_STUB_CMD_ARGS+0(%r13), %rdi
	movq	CRR_STUB_CMD_ARGS+8(%r13), %rsi
	movq	CRR_STUB_CMD_ARGS+16(%r13), %rdx
	movq	CRR_STUB_CMD_ARGS+24(%r13), %r10
	movq	CRR_STUB_CMD_ARGS+32(%r13), %r8
	movq	CRR_STUB_CMD_ARGS+40(%r13), %r9
	syscall
	jmp	5f			/* the clone child check lives after entry B (no room here) */
6:
	incq	%r15
	movq	%r15, CRR_STUB_HDR_EXECUTED(%r12)
	testb	$CRR_STUB_STOP_ON_ERROR, CRR_STUB_CMD_FLAGS(%r13)
	jz	3f
	cmpq	$-4095, %rax		/* unsigned: rax >= -4095 means an errno */
	jae	2f
3:
	addq	$CRR_STUB_CMD_SIZE, %r13
	decq	%r14
	jmp	1b
	/* the trap sits at a fixed offset (stub.h); the assembler refuses if the code outgrows it */
	.org	crr_stub_start + CRR_STUB_BATCH_TRAP_END - 1, 0x90
2:
	int3

	.org	crr_stub_start + CRR_STUB_ENTRY_SYSCALL, 0xcc
/* Entry B: one bare syscall, registers set by the tracer. */
	syscall
	int3
/* After every command: a new thread (rax 0) of a CRR_STUB_CLONE_CHILD_LIST clone3 leaves the
 * parent's list (its state is a copy of the parent's registers) and runs its own, whose header
 * is the clone3 command's third argument; anyone else stores the result and goes on. */
5:
	testq	%rax, %rax
	jnz	7f
	testb	$CRR_STUB_CLONE_CHILD_LIST, CRR_STUB_CMD_FLAGS(%r13)
	jnz	8f
7:
	movq	%rax, CRR_STUB_CMD_RESULT(%r13)
	jmp	6b
8:
	movq	CRR_STUB_CMD_ARGS+16(%r13), %r12
	jmp	crr_stub_start
	.org	crr_stub_start + CRR_STUB_CODE_SIZE, 0xcc

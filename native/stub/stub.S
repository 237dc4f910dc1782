/* Placeholder: the remote-syscall stub is written here (issue 3). */
	.text
	int3

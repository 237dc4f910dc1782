/* Placeholder: the stub's command-list layout is defined here (issue 3). */

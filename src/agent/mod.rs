//! Coding agents: Claude Code sessions in pseudo-terminals, fresh or sticky.

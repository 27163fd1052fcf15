//! Sans-I/O session state machines.

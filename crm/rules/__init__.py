"""The seeds' rules, each written once, as pure functions of plain values (no SQL, no clock,
no I/O): the windows that link a call to what came of it, and what a booking may be. SQL
fragments that filter by a window are built from these constants, and tests check that the
SQL and the pure predicate agree at the window's edges."""

// The system's SQLite 3 (Debian: libsqlite3-dev), used by Storage's SQLite backend.
#include <sqlite3.h>

//! Exit statuses of `hawkey`, from sysexits(3) where one fits.
//!
//! | status | meaning                                              |
//! |--------|------------------------------------------------------|
//! | 0      | ok; stopped on request                               |
//! | 1      | runtime failure (cannot bind, cannot fork, …)        |
//! | 64     | usage: bad command line                              |
//! | 69     | no worker could start                                |
//! | 73     | pidfile or runtime directory unusable                |
//! | 75     | another instance holds the pidfile lock              |
//! | 78     | invalid configuration                                |
//! | 3      | `hawkey status`: not running (LSB)                   |
//! | 77     | not permitted to control this master                 |

pub const OK: u8 = 0;
pub const FAILURE: u8 = 1;
pub const USAGE: u8 = 64;
pub const NO_WORKER: u8 = 69;
pub const CANT_CREATE: u8 = 73;
pub const TEMP_FAIL: u8 = 75;
pub const CONFIG: u8 = 78;
pub const NOT_RUNNING: u8 = 3;
pub const NO_PERMISSION: u8 = 77;

//! The master's resident memory once start-up is over.
//!
//! Most of a fresh master's RSS is its own executable: the configuration
//! parser, the command line, the set-up of sockets and workers. That code
//! runs once, but the kernel's fault-around maps the pages around every
//! page touched, so nearly all of the text ends up in the master's page
//! tables and stays there for the life of the service. Once the pool is
//! ready (after start-up and after each reload), [`release_startup_pages`]
//! drops the page-table entries of the executable's clean mappings. The
//! pages stay in the page cache, shared with the workers; what the event
//! loop goes on running faults back in, one minor fault per 64 KiB.

use std::fs;
use std::os::unix::fs::MetadataExt;

/// One mapping of the executable, read from `/proc/self/smaps`.
#[derive(Debug, Clone, PartialEq)]
struct Mapping {
    start: usize,
    end: usize,
    writable: bool,
    inode: u64,
    rss_kib: u64,
    /// Anonymous: pages whose content is no longer the file's (written
    /// by the loader, copied on write). Private_Dirty says nothing here:
    /// it also counts page-cache pages of a file not yet written back.
    changed_kib: u64,
}

/// Parses `/proc/<pid>/smaps` text into its mappings.
fn parse_smaps(text: &str) -> Vec<Mapping> {
    let mut mappings: Vec<Mapping> = Vec::new();
    for line in text.lines() {
        let mut fields = line.split_ascii_whitespace();
        let Some(first) = fields.next() else { continue };
        if let Some((start, end)) = first.split_once('-')
            && let (Ok(start), Ok(end)) = (
                usize::from_str_radix(start, 16),
                usize::from_str_radix(end, 16),
            )
        {
            // start-end perms offset dev inode [path]
            let perms = fields.next().unwrap_or("");
            let inode = fields.nth(2).and_then(|i| i.parse().ok()).unwrap_or(0);
            mappings.push(Mapping {
                start,
                end,
                writable: perms.contains('w'),
                inode,
                rss_kib: 0,
                changed_kib: 0,
            });
            continue;
        }
        let Some(last) = mappings.last_mut() else {
            continue;
        };
        let kib = || fields.clone().next().and_then(|n| n.parse::<u64>().ok());
        match first {
            "Rss:" => last.rss_kib = kib().unwrap_or(0),
            "Anonymous:" => last.changed_kib = kib().unwrap_or(u64::MAX),
            _ => {}
        }
    }
    mappings
}

/// The mappings of this process's executable whose every page is the
/// file's own content: not writable, nothing anonymous.
fn clean_executable_mappings() -> Vec<Mapping> {
    let (Ok(exe), Ok(smaps)) = (
        fs::metadata("/proc/self/exe"),
        fs::read_to_string("/proc/self/smaps"),
    ) else {
        return Vec::new();
    };
    parse_smaps(&smaps)
        .into_iter()
        .filter(|m| m.inode == exe.ino() && m.inode != 0 && !m.writable && m.changed_kib == 0)
        .collect()
}

/// Drops the page-table entries of the executable's clean mappings;
/// returns how many KiB were resident in them. Best effort: on any error
/// nothing is released and the master runs as before.
pub(crate) fn release_startup_pages() -> u64 {
    let mut released = 0;
    for m in clean_executable_mappings() {
        // SAFETY: [start, end) is exactly one mapping of our executable as
        // the kernel listed it just now; the master is single-threaded, so
        // nothing maps or unmaps in between. It is not writable and has no
        // anonymous (copied-on-write) page, so every page holds the file's
        // bytes:
        // MADV_DONTNEED only removes page-table entries, and the next access
        // faults the same bytes back in from the page cache (the kernel
        // refuses writes to a running executable, ETXTBSY). No Rust object
        // lives in these pages, and no memory is freed.
        let rc = unsafe {
            libc::madvise(
                m.start as *mut libc::c_void,
                m.end - m.start,
                libc::MADV_DONTNEED,
            )
        };
        if rc == 0 {
            released += m.rss_kib;
        }
    }
    released
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMAPS: &str = "\
55d0c0000000-55d0c0100000 r--p 00000000 fd:01 1234 /usr/sbin/hawkey
Size:               1024 kB
Rss:                 900 kB
Private_Dirty:         0 kB
Anonymous:             0 kB
55d0c0100000-55d0c0400000 r-xp 00100000 fd:01 1234 /usr/sbin/hawkey
Rss:                3000 kB
Private_Dirty:      1172 kB
Anonymous:             0 kB
55d0c0400000-55d0c0410000 r--p 00400000 fd:01 1234 /usr/sbin/hawkey
Rss:                  64 kB
Private_Dirty:        64 kB
Anonymous:            64 kB
55d0c0410000-55d0c0420000 rw-p 00410000 fd:01 1234 /usr/sbin/hawkey
Rss:                  64 kB
Private_Dirty:         8 kB
Anonymous:             8 kB
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0 [stack]
Rss:                  12 kB
";

    #[test]
    fn smaps_is_read_into_mappings_with_what_changed_in_them() {
        let maps = parse_smaps(SMAPS);
        assert_eq!(maps.len(), 5);
        assert_eq!(maps[1].start, 0x55d0_c010_0000);
        assert_eq!(maps[1].end, 0x55d0_c040_0000);
        assert_eq!(
            (maps[1].inode, maps[1].rss_kib, maps[1].changed_kib),
            (1234, 3000, 0)
        );
        // RELRO: read-only now, but written by the loader: not the file's.
        assert_eq!((maps[2].writable, maps[2].changed_kib), (false, 64));
        assert!(maps[3].writable);
        assert_eq!(maps[4].inode, 0);
    }

    fn executable_rss_kib() -> u64 {
        let exe = fs::metadata("/proc/self/exe").unwrap().ino();
        parse_smaps(&fs::read_to_string("/proc/self/smaps").unwrap())
            .iter()
            .filter(|m| m.inode == exe)
            .map(|m| m.rss_kib)
            .sum()
    }

    #[test]
    fn released_pages_leave_the_page_tables_and_the_code_still_runs() {
        let before = executable_rss_kib();
        let released = release_startup_pages();
        let after = executable_rss_kib();
        assert!(released > 0, "nothing released of {before} KiB");
        assert!(
            after < before,
            "executable RSS {before} KiB before, {after} KiB after releasing {released} KiB"
        );
        // What runs next faults back in: executable_rss_kib ran after the
        // release, through pages that had just left the page tables.
    }
}

use std::path::Path;
use std::time::Duration;

use super::*;
use crate::io::disk::read_whole;

/// How many seeds the tests that look for a rare outcome try.
const SEEDS_TRIED_MAX: u64 = 256;

fn write_file(disk: &SimDisk, path: &str, data: &[u8], sync: bool) {
    let file = disk.open(Path::new(path), true).expect("open");
    file.write_at(data, 0).expect("write");
    if sync {
        file.sync().expect("sync");
    }
}

/// A disk with a durable directory `/d` holding a durable, empty file `/d/log`.
fn disk_with_log(disk: SimDisk) -> (SimDisk, Arc<dyn DiskFile>) {
    disk.create_dir_all(Path::new("/d")).unwrap();
    disk.sync_dir(Path::new("/d")).unwrap();
    let file = disk.open(Path::new("/d/log"), true).unwrap();
    disk.sync_dir(Path::new("/d")).unwrap();
    (disk, file)
}

fn contents(disk: &SimDisk, path: &str) -> Vec<u8> {
    read_whole(disk, Path::new(path)).unwrap()
}

fn sector_filled_with(value: u8) -> Vec<u8> {
    vec![value; to_index(SECTOR_BYTES)]
}

fn faults_with(change: impl FnOnce(&mut SimDiskFaults)) -> SimDiskFaults {
    let mut faults = SimDiskFaults::none();
    change(&mut faults);
    faults
}

#[test]
fn crash_loses_unsynced_writes_and_unsynced_entries() {
    let disk = SimDisk::new();
    disk.create_dir_all(Path::new("/data")).unwrap();
    disk.sync_dir(Path::new("/data")).unwrap();
    write_file(&disk, "/data/synced", b"kept", true);
    write_file(&disk, "/data/unsynced-entry", b"lost", true);
    disk.sync_dir(Path::new("/data")).unwrap();
    write_file(&disk, "/data/late", b"never durable", true);
    let file = disk.open(Path::new("/data/synced"), false).unwrap();
    file.write_at(b"more", 4).unwrap();

    disk.crash_losing_everything_unsynced();

    assert!(file.len().is_err(), "old handles die with the crash");
    assert!(!disk.exists(Path::new("/data/late")));
    let reopened = disk.open(Path::new("/data/synced"), false).unwrap();
    let mut buf = vec![0; 16];
    let read = reopened.read_at(&mut buf, 0).unwrap();
    assert_eq!(&buf[..read], b"kept");
}

#[test]
fn crash_keeps_a_prefix_of_pending_writes() {
    for seed in 0..64 {
        let (disk, file) = disk_with_log(SimDisk::new());
        let chunk = vec![7u8; 1024];
        for index in 0..4u64 {
            file.write_at(&chunk, index * 1024).unwrap();
        }
        disk.crash(seed);
        let contents = contents(&disk, "/d/log");
        assert_eq!(contents.len() as u64 % SECTOR_BYTES, 0);
        assert!(
            contents.iter().all(|byte| *byte == 7),
            "no byte from nowhere"
        );
    }
}

#[test]
fn rename_is_durable_only_after_sync_dir() {
    let disk = SimDisk::new();
    disk.create_dir_all(Path::new("/d")).unwrap();
    disk.sync_dir(Path::new("/d")).unwrap();
    write_file(&disk, "/d/a", b"x", true);
    disk.sync_dir(Path::new("/d")).unwrap();
    disk.rename(Path::new("/d/a"), Path::new("/d/b")).unwrap();
    disk.crash_losing_everything_unsynced();
    assert!(disk.exists(Path::new("/d/a")));
    assert!(!disk.exists(Path::new("/d/b")));
}

#[test]
fn creation_is_durable_only_after_sync_dir_and_truncation_only_after_sync() {
    let disk = SimDisk::new();
    disk.create_dir_all(Path::new("/d")).unwrap();
    disk.sync_dir(Path::new("/d")).unwrap();
    write_file(&disk, "/d/created", b"synced data, unsynced entry", true);
    write_file(&disk, "/d/truncated", b"0123456789", true);
    disk.sync_dir(Path::new("/d")).unwrap();
    write_file(&disk, "/d/created-late", b"x", true);
    let truncated = disk.open(Path::new("/d/truncated"), false).unwrap();
    truncated.truncate(4).unwrap();
    disk.crash_losing_everything_unsynced();
    assert!(!disk.exists(Path::new("/d/created-late")));
    assert_eq!(contents(&disk, "/d/truncated"), b"0123456789");

    let truncated = disk.open(Path::new("/d/truncated"), false).unwrap();
    truncated.truncate(4).unwrap();
    truncated.sync().unwrap();
    disk.crash_losing_everything_unsynced();
    assert_eq!(contents(&disk, "/d/truncated"), b"0123");
}

/// Writes four sectors at 0, 512, 1024 and 1536 filled with 1, 2, 3 and 4, none synced.
fn write_four_sectors(file: &dyn DiskFile) {
    for value in 1..=4u8 {
        let offset = u64::from(value - 1) * SECTOR_BYTES;
        file.write_at(&sector_filled_with(value), offset).unwrap();
    }
}

/// Which of the four sectors of `write_four_sectors` survived, checking that every byte is either
/// its write's or a hole's zero.
fn surviving_sectors(contents: &[u8]) -> Vec<bool> {
    (1..=4u8)
        .map(|value| {
            let start = to_index(u64::from(value - 1) * SECTOR_BYTES);
            let sector = contents.get(start..start + to_index(SECTOR_BYTES));
            match sector {
                None => false,
                Some(bytes) if bytes.iter().all(|byte| *byte == value) => true,
                Some(bytes) => {
                    assert!(bytes.iter().all(|byte| *byte == 0), "a byte from nowhere");
                    false
                }
            }
        })
        .collect()
}

#[test]
fn independent_crash_can_keep_a_later_write_and_lose_an_earlier_one() {
    let mut reordered_seeds = 0;
    for seed in 0..SEEDS_TRIED_MAX {
        let (disk, file) = disk_with_log(SimDisk::new());
        write_four_sectors(file.as_ref());
        disk.crash_with_mode(seed, CrashMode::KeepIndependently);
        let survived = surviving_sectors(&contents(&disk, "/d/log"));
        if survived.windows(2).any(|pair| !pair[0] && pair[1]) {
            reordered_seeds += 1;
        }
    }
    assert!(reordered_seeds > 0, "some seed keeps a later write only");
}

#[test]
fn prefix_crash_never_keeps_a_later_write_without_the_earlier_ones() {
    for seed in 0..SEEDS_TRIED_MAX {
        let (disk, file) = disk_with_log(SimDisk::new());
        write_four_sectors(file.as_ref());
        disk.crash_with_mode(seed, CrashMode::KeepPrefix);
        let survived = surviving_sectors(&contents(&disk, "/d/log"));
        assert!(
            survived.windows(2).all(|pair| pair[0] || !pair[1]),
            "seed {seed}: {survived:?}"
        );
    }
}

#[test]
fn crash_mode_follows_the_configured_probability() {
    let faults = faults_with(|faults| faults.crash_independent_writes_probability = 1.0);
    let disk = SimDisk::with_faults(1, faults);
    disk.crash(1);
    disk.crash(2);
    let counts = disk.fault_counts();
    assert_eq!(counts.crashes_keeping_writes_independently, 2);
    assert_eq!(counts.crashes_keeping_a_prefix, 0);
}

#[test]
fn independent_crash_tears_writes_at_sector_boundaries() {
    let mut torn_seeds = 0;
    for seed in 0..SEEDS_TRIED_MAX {
        let (disk, file) = disk_with_log(SimDisk::new());
        let mut data = Vec::new();
        for value in 1..=4u8 {
            data.extend(sector_filled_with(value));
        }
        // One write of four sectors, starting mid-sector so its first piece is short.
        let offset = SECTOR_BYTES / 2;
        file.write_at(&data, offset).unwrap();
        disk.crash_with_mode(seed, CrashMode::KeepIndependently);
        let after = contents(&disk, "/d/log");
        let mut expected_full = vec![0; to_index(offset)];
        expected_full.extend(&data);
        for (index, sector) in after.chunks(to_index(SECTOR_BYTES)).enumerate() {
            let start = index * to_index(SECTOR_BYTES);
            let new = &expected_full[start..start + sector.len()];
            assert!(
                sector == new || sector.iter().all(|byte| *byte == 0),
                "seed {seed}: a sector is all old or all new"
            );
        }
        if disk.fault_counts().pending_writes_torn > 0 {
            torn_seeds += 1;
        }
    }
    assert!(torn_seeds > 0, "some seed tears the write");
}

#[test]
fn a_failed_sync_leaves_the_file_suspect_and_a_later_sync_may_succeed_without_the_data() {
    let mut reads_showed_lost_data = 0;
    let mut reads_showed_dropped_pages = 0;
    for seed in 0..SEEDS_TRIED_MAX {
        let failing = faults_with(|faults| faults.sync_error_probability = 1.0);
        let (disk, file) = disk_with_log(SimDisk::with_faults(seed, failing));
        disk.set_faults(SimDiskFaults::none());
        file.write_at(&sector_filled_with(1), 0).unwrap();
        file.sync().unwrap();
        disk.set_faults(failing);
        file.write_at(&sector_filled_with(2), SECTOR_BYTES).unwrap();

        let error = file.sync().expect_err("the sync fails");
        assert_eq!(error.kind(), io::ErrorKind::Other);
        assert!(error.to_string().contains("EIO"), "{error}");
        assert_eq!(disk.fault_counts().sync_errors, 1);

        let mut cached = vec![0; to_index(2 * SECTOR_BYTES)];
        let cached_len = file.read_at(&mut cached, 0).unwrap();
        disk.set_faults(SimDiskFaults::none());
        file.sync().expect("a later sync succeeds");
        disk.crash_losing_everything_unsynced();

        let after = contents(&disk, "/d/log");
        assert_eq!(
            &after[..to_index(SECTOR_BYTES)],
            &sector_filled_with(1)[..],
            "synced data is intact"
        );
        let second_sector_durable = after.len() == cached.len();
        if cached_len == cached.len() && !second_sector_durable {
            // The cache showed the write, the later sync returned Ok, and it is gone.
            reads_showed_lost_data += 1;
        }
        if cached_len == to_index(SECTOR_BYTES) {
            reads_showed_dropped_pages += 1;
        }
    }
    assert!(reads_showed_lost_data > 0);
    assert!(reads_showed_dropped_pages > 0);
}

#[test]
fn transient_read_errors_have_no_effect_and_stop_after_the_budget() {
    let faults = faults_with(|faults| faults.read_error_probability = 1.0);
    let (disk, file) = disk_with_log(SimDisk::with_faults(3, faults));
    file.write_at(b"stored", 0).unwrap();
    file.sync().unwrap();
    let mut buf = [0u8; 6];
    for _ in 0..READ_FAULTS_IN_A_ROW_PER_FILE_DEFAULT_MAX {
        let error = file.read_at(&mut buf, 0).expect_err("a transient error");
        assert_eq!(error.kind(), io::ErrorKind::Other);
    }
    assert_eq!(
        file.read_at(&mut buf, 0).unwrap(),
        6,
        "the retry after the budget is clean"
    );
    assert_eq!(&buf, b"stored");
    assert_eq!(
        disk.fault_counts().read_errors,
        u64::from(READ_FAULTS_IN_A_ROW_PER_FILE_DEFAULT_MAX)
    );
}

#[test]
fn transient_write_errors_apply_at_most_a_strict_prefix_of_sectors() {
    let mut partly_applied = 0;
    for seed in 0..64 {
        let faults = faults_with(|faults| faults.write_error_probability = 1.0);
        let (disk, file) = disk_with_log(SimDisk::with_faults(seed, faults));
        let mut data = Vec::new();
        for value in 1..=4u8 {
            data.extend(sector_filled_with(value));
        }
        assert!(file.write_at(&data, 0).is_err());
        let len = file.len().unwrap();
        assert!(
            len < data.len() as u64 && len % SECTOR_BYTES == 0,
            "seed {seed}"
        );
        disk.set_faults(SimDiskFaults::none());
        assert_eq!(contents(&disk, "/d/log"), &data[..to_index(len)]);
        if len > 0 {
            partly_applied += 1;
        }
        assert_eq!(disk.fault_counts().write_errors, 1);
    }
    assert!(partly_applied > 0);
}

#[test]
fn writes_beyond_the_capacity_fail_with_storage_full_and_have_no_effect() {
    let faults = faults_with(|faults| faults.capacity_bytes = Some(1_024));
    let (disk, file) = disk_with_log(SimDisk::with_faults(4, faults));
    file.write_at(&[1; 1_000], 0).unwrap();
    let error = file
        .write_at(&[2; 100], 1_000)
        .expect_err("the disk is full");
    assert_eq!(error.kind(), io::ErrorKind::StorageFull);
    assert_eq!(file.len().unwrap(), 1_000);
    file.write_at(&[3; 24], 1_000).expect("exactly full fits");
    file.write_at(&[4; 100], 0)
        .expect("overwriting needs no space");
    let other = disk.open(Path::new("/d/other"), true).unwrap();
    assert!(other.write_at(&[5], 0).is_err());
    disk.remove_file(Path::new("/d/log")).unwrap();
    other
        .write_at(&[5], 0)
        .expect("removing a file frees space");
    assert_eq!(disk.fault_counts().storage_full_errors, 2);
}

#[test]
fn corruption_flips_one_bit_of_a_read_and_never_the_stored_bytes() {
    let faults = faults_with(|faults| {
        faults.read_corruption_probability = 1.0;
        faults.budget = FaultBudget::unrestricted();
    });
    let (disk, file) = disk_with_log(SimDisk::with_faults(5, faults));
    let stored = vec![0xA5; 100];
    file.write_at(&stored, 0).unwrap();
    file.sync().unwrap();
    let mut read = vec![0; 100];
    file.read_exact_at(&mut read, 0).unwrap();
    let flipped_bits: u32 = read
        .iter()
        .zip(&stored)
        .map(|(read, stored)| (read ^ stored).count_ones())
        .sum();
    assert_eq!(flipped_bits, 1);
    disk.set_faults(SimDiskFaults::none());
    file.read_exact_at(&mut read, 0).unwrap();
    assert_eq!(read, stored, "a re-read is correct");
    assert_eq!(disk.fault_counts().read_corruptions, 1);
}

#[test]
fn the_protecting_budget_confines_corruption_and_latent_errors_to_unsynced_bytes() {
    let faults = faults_with(|faults| {
        faults.read_corruption_probability = 0.5;
        faults.latent_sector_error_probability = 0.2;
        faults.budget = FaultBudget::protecting_synced_data();
    });
    let (disk, file) = disk_with_log(SimDisk::with_faults(6, faults));
    let synced = vec![1u8; 1_000];
    file.write_at(&synced, 0).unwrap();
    file.sync().unwrap();
    file.write_at(&[2u8; 2_000], 1_000).unwrap();
    for _ in 0..200 {
        let mut head = vec![0; 1_000];
        file.read_exact_at(&mut head, 0)
            .expect("trusted bytes always read");
        assert_eq!(head, synced);
        let mut whole = vec![0; 3_000];
        if file.read_exact_at(&mut whole, 0).is_ok() {
            assert_eq!(&whole[..1_000], &synced[..]);
        }
    }
    let counts = disk.fault_counts();
    assert!(counts.read_corruptions > 0 && counts.latent_sector_errors > 0);
    file.sync().unwrap();
    disk.set_faults(SimDiskFaults::none());
    let mut whole = vec![0; 3_000];
    file.read_exact_at(&mut whole, 0)
        .expect("a successful sync makes every byte trusted and readable");
}

#[test]
fn latent_sector_errors_persist_until_the_sector_is_rewritten() {
    let faults = faults_with(|faults| {
        faults.latent_sector_error_probability = 1.0;
        faults.budget = FaultBudget::unrestricted();
    });
    let (disk, file) = disk_with_log(SimDisk::with_faults(7, faults));
    file.write_at(&[9; 1_024], 0).unwrap();
    file.sync().unwrap();
    let mut sector = vec![0; to_index(SECTOR_BYTES)];
    assert!(file.read_at(&mut sector, 0).is_err());
    disk.set_faults(SimDiskFaults {
        budget: FaultBudget::unrestricted(),
        ..SimDiskFaults::none()
    });
    assert!(file.read_at(&mut sector, 0).is_err(), "still unreadable");
    file.sync().unwrap();
    disk.crash_losing_everything_unsynced();
    let file = disk.open(Path::new("/d/log"), false).unwrap();
    assert!(file.read_at(&mut sector, 0).is_err(), "it survives a crash");
    file.read_exact_at(&mut sector, SECTOR_BYTES)
        .expect("other sectors read");
    file.write_at(&[8; 10], 100).unwrap();
    file.read_exact_at(&mut sector, 0).expect("rewritten");
    assert_eq!(&sector[100..110], &[8; 10]);
    assert_eq!(sector[0], 9, "the rest of the sector kept its bytes");
    let counts = disk.fault_counts();
    assert_eq!(counts.latent_sector_errors, 1);
    assert_eq!(counts.unreadable_sector_reads, 2);
}

#[test]
fn latency_accrues_and_resets_when_taken() {
    let faults = faults_with(|faults| faults.latency_enabled = true);
    let (disk, file) = disk_with_log(SimDisk::with_faults(8, faults));
    disk.take_simulated_latency();
    file.write_at(b"x", 0).unwrap();
    file.sync().unwrap();
    let latency = disk.take_simulated_latency();
    let min = Duration::from_micros(SYNC_LATENCY_MIN_MICROSECONDS + WRITE_LATENCY_MIN_MICROSECONDS);
    let max = Duration::from_micros(SYNC_LATENCY_MAX_MICROSECONDS + WRITE_LATENCY_MAX_MICROSECONDS);
    assert!(min <= latency && latency <= max, "{latency:?}");
    assert_eq!(disk.take_simulated_latency(), Duration::ZERO);

    disk.set_faults(SimDiskFaults {
        slow_operation_probability: 1.0,
        ..faults
    });
    file.sync().unwrap();
    let slow = disk.take_simulated_latency();
    assert!(slow >= Duration::from_micros(SLOW_SYNC_LATENCY_MIN_MICROSECONDS));
    assert!(slow <= Duration::from_micros(SLOW_SYNC_LATENCY_MAX_MICROSECONDS));
    assert_eq!(disk.fault_counts().slow_operations, 1);
    assert_eq!(SimDisk::new().take_simulated_latency(), Duration::ZERO);
}

fn every_fault(probability: f64) -> SimDiskFaults {
    SimDiskFaults {
        crash_independent_writes_probability: probability,
        sync_error_probability: probability,
        read_error_probability: probability,
        write_error_probability: probability,
        read_corruption_probability: probability,
        latent_sector_error_probability: probability,
        slow_operation_probability: probability,
        latency_enabled: true,
        capacity_bytes: Some(1 << 20),
        budget: FaultBudget::unrestricted(),
    }
}

#[test]
fn heal_stops_every_fault() {
    let (disk, file) = disk_with_log(SimDisk::with_faults(9, every_fault(1.0)));
    assert!(file.write_at(&[1; 1_024], 0).is_err());
    let mut buf = [0; 16];
    let _ = file.read_at(&mut buf, 0);
    disk.heal();
    let before = disk.fault_counts();
    file.write_at(&[1; 1_024], 0).unwrap();
    file.sync().unwrap();
    for _ in 0..16 {
        file.read_exact_at(&mut buf, 0).unwrap();
        assert_eq!(buf, [1; 16]);
    }
    assert_eq!(disk.fault_counts(), before);
    let healed = disk.faults();
    assert_eq!(healed.sync_error_probability, 0.0);
    assert_eq!(healed.capacity_bytes, None);
    assert!(healed.latency_enabled, "healthy latency is not a fault");
    assert!(disk.take_simulated_latency() > Duration::ZERO);
}

#[test]
fn faults_per_kind_max_caps_each_kind() {
    let faults = SimDiskFaults {
        budget: FaultBudget {
            faults_per_kind_max: Some(2),
            ..FaultBudget::unrestricted()
        },
        ..faults_with(|faults| faults.sync_error_probability = 1.0)
    };
    let (disk, file) = disk_with_log(SimDisk::with_faults(10, faults));
    let results: Vec<bool> = (0..4).map(|_| file.sync().is_ok()).collect();
    assert_eq!(results, [false, false, true, true]);
    assert_eq!(disk.fault_counts().sync_errors, 2);
}

/// A workload touching every operation, tolerating every error; returns what it observed.
fn run_workload(seed: u64) -> (Vec<u8>, FaultCounts, Duration, Vec<String>) {
    let disk = SimDisk::with_faults(seed, every_fault(0.2));
    let mut observed = Vec::new();
    disk.create_dir_all(Path::new("/d")).unwrap();
    disk.sync_dir(Path::new("/d")).unwrap();
    for round in 0..20u64 {
        let file = disk.open(Path::new("/d/log"), true).unwrap();
        for index in 0..8u64 {
            let data = vec![u8::try_from(round * 8 + index).unwrap(); 700];
            observed.push(format!(
                "{:?}",
                file.write_at(&data, (round * 8 + index) * 300)
            ));
            let mut buf = vec![0; 900];
            observed.push(format!(
                "{:?}",
                file.read_at(&mut buf, index * 450).map(|_| buf)
            ));
        }
        observed.push(format!("{:?}", file.sync()));
        disk.sync_dir(Path::new("/d")).unwrap();
        if round % 5 == 4 {
            disk.crash(seed + round);
        }
    }
    disk.heal();
    let contents = read_whole(&disk, Path::new("/d/log")).unwrap_or_default();
    (
        contents,
        disk.fault_counts(),
        disk.take_simulated_latency(),
        observed,
    )
}

#[test]
fn the_same_seed_and_operations_give_the_same_contents_and_counts() {
    let first = run_workload(11);
    let second = run_workload(11);
    assert_eq!(first, second);
    let counts = first.1.to_map();
    assert!(
        counts.values().filter(|count| **count > 0).count() >= 8,
        "{counts:?}"
    );
    assert_ne!(run_workload(12).1, first.1, "another seed, another world");
}

#[test]
fn the_configuration_serializes_for_the_simulator_report() {
    let faults = every_fault(0.25);
    let json = serde_json::to_string(&faults).unwrap();
    assert!(json.contains("\"sync_error_probability\":0.25"), "{json}");
    let back: SimDiskFaults = serde_json::from_str(&json).unwrap();
    assert_eq!(back, faults);
}

#[test]
#[should_panic(expected = "read_error_probability")]
fn an_invalid_probability_is_a_programmer_error() {
    SimDisk::with_faults(0, faults_with(|faults| faults.read_error_probability = 1.5));
}

#[test]
fn the_root_always_exists() {
    let disk = SimDisk::new();
    assert!(disk.exists(Path::new("/")));
    disk.sync_dir(Path::new("/")).unwrap();
    write_file(&disk, "/top", b"x", true);
    disk.sync_dir(Path::new("/")).unwrap();
    disk.crash_losing_everything_unsynced();
    assert_eq!(
        disk.list(Path::new("/")).unwrap(),
        vec![DirEntry {
            name: "top".to_owned(),
            is_dir: false
        }]
    );
}

/// A minimal correct single-node broker over one log file: fixed-size records carrying a CRC32C,
/// acknowledged only after a successful sync, reads retried past the budget, the log taken
/// offline (then crashed and recovered) after a failed write or sync.
struct CorrectBroker {
    disk: SimDisk,
    file: Arc<dyn DiskFile>,
    /// Records acknowledged to producers (or recovered and synced, hence trusted).
    acknowledged: Vec<Vec<u8>>,
    unacknowledged: Vec<Vec<u8>>,
}

const RECORD_PAYLOAD_BYTES: usize = 100;
const RECORD_BYTES: usize = RECORD_PAYLOAD_BYTES + 4;
/// A correct broker retries a read once more than the budget lets faults repeat.
const READ_ATTEMPTS_MAX: u32 = READ_FAULTS_IN_A_ROW_PER_FILE_DEFAULT_MAX + 1;

fn encode_record(payload: &[u8]) -> Vec<u8> {
    let mut record = crc32c::crc32c(payload).to_le_bytes().to_vec();
    record.extend_from_slice(payload);
    record
}

fn decode_record(record: &[u8]) -> Option<Vec<u8>> {
    let (checksum, payload) = record.split_at(4);
    let valid = checksum == crc32c::crc32c(payload).to_le_bytes();
    valid.then(|| payload.to_vec())
}

impl CorrectBroker {
    fn end(&self) -> u64 {
        ((self.acknowledged.len() + self.unacknowledged.len()) * RECORD_BYTES) as u64
    }

    /// Reads and verifies the record at `index`, retrying; `None` if it stays bad.
    fn read_record(&self, index: usize) -> Option<Vec<u8>> {
        let mut record = vec![0; RECORD_BYTES];
        (0..READ_ATTEMPTS_MAX).find_map(|_| {
            let offset = (index * RECORD_BYTES) as u64;
            self.file.read_exact_at(&mut record, offset).ok()?;
            decode_record(&record)
        })
    }

    /// Appends a record; returns false if the log must go offline.
    fn append(&mut self, payload: Vec<u8>) -> bool {
        let written = self.file.write_at(&encode_record(&payload), self.end());
        self.unacknowledged.push(payload);
        written.is_ok()
    }

    /// Syncs and acknowledges; returns false if the log must go offline.
    fn sync(&mut self) -> bool {
        let synced = self.file.sync().is_ok();
        if synced {
            self.acknowledged.append(&mut self.unacknowledged);
        }
        synced
    }

    /// Crashes, then recovers by reading every record until the first bad one, cutting the log
    /// there and syncing; repeats while the sync fails.
    fn crash_and_recover(&mut self, seed: u64) {
        self.unacknowledged.clear();
        loop {
            self.disk.crash(seed);
            self.file = self.disk.open(Path::new("/d/log"), false).unwrap();
            let len = to_index(self.file.len().unwrap());
            let recovered: Vec<Vec<u8>> = (0..len / RECORD_BYTES)
                .map_while(|index| self.read_record(index))
                .collect();
            assert!(
                recovered.starts_with(&self.acknowledged),
                "an acknowledged record was lost: {} acknowledged, {} recovered",
                self.acknowledged.len(),
                recovered.len()
            );
            self.file
                .truncate((recovered.len() * RECORD_BYTES) as u64)
                .unwrap();
            if self.file.sync().is_ok() {
                self.acknowledged = recovered;
                return;
            }
        }
    }
}

#[test]
fn a_correct_broker_never_loses_an_acknowledged_record_within_the_protecting_budget() {
    for seed in 0..32 {
        let faults = SimDiskFaults {
            budget: FaultBudget::protecting_synced_data(),
            capacity_bytes: None,
            ..every_fault(0.1)
        };
        let (disk, file) = disk_with_log(SimDisk::with_faults(seed, faults));
        let mut broker = CorrectBroker {
            disk: disk.clone(),
            file,
            acknowledged: Vec::new(),
            unacknowledged: Vec::new(),
        };
        for step in 0..300u64 {
            let payload = vec![u8::try_from(step % 251).unwrap(); RECORD_PAYLOAD_BYTES];
            let healthy = broker.append(payload) && (step % 3 != 2 || broker.sync());
            if !healthy || step % 50 == 49 {
                broker.crash_and_recover(seed * 1_000 + step);
            }
            if let Some(index) = step.checked_rem(broker.acknowledged.len() as u64) {
                let index = to_index(index);
                let read = broker.read_record(index);
                assert_eq!(
                    read.as_ref(),
                    Some(&broker.acknowledged[index]),
                    "seed {seed}"
                );
            }
        }
        let counts = disk.fault_counts();
        assert!(
            counts.sync_errors > 0 && counts.read_corruptions > 0,
            "{counts:?}"
        );
    }
}

#[test]
fn a_disk_with_a_capacity_reports_its_space_and_an_unbounded_one_cannot() {
    let unbounded = SimDisk::new();
    let error = unbounded.space(Path::new("/")).unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::Unsupported);
    let bounded = SimDisk::with_faults(
        3,
        SimDiskFaults {
            capacity_bytes: Some(10_000),
            ..SimDiskFaults::none()
        },
    );
    bounded.create_dir_all(Path::new("/d")).unwrap();
    let file = bounded.open(Path::new("/d/f"), true).unwrap();
    file.write_at(&[7; 2_500], 0).unwrap();
    let space = bounded.space(Path::new("/d")).unwrap();
    assert_eq!((space.total_bytes, space.usable_bytes), (10_000, 7_500));
}

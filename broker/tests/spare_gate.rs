//! Deleting a partition's directory while its next segment's spare is being written
//! (`log.preallocate`): the spare's gate, closed from another thread, stops the writer and waits
//! for it, so nothing is left half written in a directory that a topic of the same name may
//! reuse. Threads here stand in for the runtime's blocking pool.

use std::path::Path;
use std::sync::Arc;

use skiff::io::{Disk, SimDisk};
use skiff::log::spare::{spare_path, SpareGate, SparePlan, SPARE_WRITE_CHUNK_BYTES};

#[test]
fn closing_the_gate_stops_a_spare_being_written_and_waits_for_it() {
    let disk = SimDisk::new();
    let dir = Path::new("/p");
    disk.create_dir_all(dir).unwrap();
    let gate = Arc::new(SpareGate::default());
    let plan = SparePlan {
        path: spare_path(dir),
        bytes: 64 * SPARE_WRITE_CHUNK_BYTES as u64,
    };
    let writer = {
        let (disk, gate) = (disk.clone(), gate.clone());
        let path = plan.path.clone();
        std::thread::spawn(move || {
            SparePlan {
                path,
                bytes: plan.bytes,
            }
            .execute(&disk, &gate)
        })
    };
    // Wait until the writer has begun (its file exists), then close the gate under it.
    while !disk.exists(&plan.path) && !writer.is_finished() {
        std::thread::yield_now();
    }
    gate.close();
    // Once `close` returns the writer has stopped: it either finished first, leaving a whole
    // spare, or stopped and removed what it wrote. Nothing is half written.
    let exists = disk.exists(&plan.path);
    let whole = exists && disk.open(&plan.path, false).unwrap().len().unwrap() == plan.bytes;
    assert_eq!(exists, whole, "a partial spare outlived close");
    assert_eq!(writer.join().unwrap().is_ok(), whole);
    assert!(
        plan.execute(&disk, &gate).is_err(),
        "nothing starts after close"
    );
}

//! The real packages, fetched on demand into $RACM3_HOME (CI's .ci/run has npm and apt).
//! These pin the counts that later stages rely on.

use racm3_data::emoji::Vendor;
use racm3_data::{Dataset, Home, OnBadSample, Silent, Split, Stats, fetch};

// The emoji packages: 1,911 entities in five renditions (the three SVG ones drawn once),
// split by entity with no leak.
#[test]
fn real_emoji_packages() {
    if !racm3_testing::external("real_emoji_packages") {
        return;
    }
    let home = Home::from_env();
    for vendor in Vendor::ALL {
        fetch::fetch_emoji(&home.emoji_root(), vendor, OnBadSample::Fail, &Silent)
            .expect("fetching the emoji packages");
    }
    // A second fetch finds everything in place and downloads or draws nothing.
    for vendor in [Vendor::Twitter, Vendor::OpenMoji] {
        let again =
            fetch::fetch_emoji(&home.emoji_root(), vendor, OnBadSample::Fail, &Silent).unwrap();
        assert!(
            matches!(again, fetch::Fetched::AlreadyPresent(_)),
            "{again:?}"
        );
    }

    let loaded = Dataset::resolve("emoji", &home)
        .unwrap()
        .load(OnBadSample::Fail, &Silent)
        .unwrap();
    let stats = Stats::of(&loaded.documents);
    assert_eq!(stats.documents, 16579);
    assert_eq!(stats.entities, 1911);
    // Vendors by name: fluent, google, noto-v1, openmoji, twitter.
    assert_eq!(
        stats.vendors.values().copied().collect::<Vec<_>>(),
        vec![3139, 3786, 2082, 3786, 3786]
    );
    assert_eq!(stats.entities_shared_train_test, 0);
    assert_eq!(stats.entities_shared_train_val, 0);
    let split_entities: usize = stats.splits.values().map(|s| s.entities).sum();
    assert_eq!(split_entities, 1911);
    // Held-out entities exist in numbers worth measuring.
    assert!(stats.splits[&Split::Test].entities > 150, "{stats:?}");
}

// Fashion-MNIST: all 70,000 images, the official 10,000 as test.
#[test]
fn real_fashion_mnist() {
    if !racm3_testing::external("real_fashion_mnist") {
        return;
    }
    let home = Home::from_env();
    fetch::fetch_fashion_mnist(home.path()).expect("fetching Fashion-MNIST");
    let loaded = Dataset::resolve("fashion-mnist", &home)
        .unwrap()
        .load(OnBadSample::Fail, &Silent)
        .unwrap();
    let stats = Stats::of(&loaded.documents);
    assert_eq!(stats.documents, 70_000);
    assert_eq!(stats.splits[&Split::Test].documents, 10_000);
    assert_eq!(stats.splits[&Split::Val].documents, 6_000);
}

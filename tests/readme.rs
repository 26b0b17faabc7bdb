//! The README shows what the code does: the onboarding flow graph is the one the workflow renders.

#[test]
fn readme_shows_the_onboarding_graph() {
    let keys = otac::KeySet::new(otac::Key::hs256([7u8; 32]).expect("key"));
    let workflow = otac_examples::config::onboarding_workflow(
        keys,
        otac_examples::config::memory_replay(),
        false,
    )
    .expect("wf");
    let graph = workflow.to_mermaid();
    let readme = include_str!("../README.md");
    assert!(
        readme.contains(&format!("```mermaid\n{graph}```")),
        "README.md must show this graph:\n{graph}"
    );
}

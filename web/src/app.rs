//! The page frame: a header with three tabs. Every page stays mounted (switching keeps a loaded
//! model and chosen files); `#classify` and `#compare` in the URL open those pages.

use leptos::prelude::*;

use crate::classify_page::ClassifyPage;
use crate::compare_page::ComparePage;
use crate::qa_page::QaPage;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tab {
    Qa,
    Classify,
    Compare,
}

fn tab_from_hash() -> Tab {
    let hash = web_sys::window()
        .and_then(|w| w.location().hash().ok())
        .unwrap_or_default();
    if hash.starts_with("#compare") {
        Tab::Compare
    } else if hash.starts_with("#classify") {
        Tab::Classify
    } else {
        Tab::Qa
    }
}

#[component]
pub fn App() -> impl IntoView {
    let tab = RwSignal::new(tab_from_hash());
    // The loading screen waits for the question-answering page's demo model; the other pages
    // show at once (the model keeps downloading behind them).
    if tab.get_untracked() != Tab::Qa {
        crate::splash::done();
    }
    // Links and the back button change the hash without reloading the page.
    let _listener =
        window_event_listener(leptos::ev::hashchange, move |_| tab.set(tab_from_hash()));
    let go = move |t: Tab| {
        tab.set(t);
        if let Some(w) = web_sys::window() {
            let _ = w.location().set_hash(match t {
                Tab::Qa => "qa",
                Tab::Classify => "classify",
                Tab::Compare => "compare",
            });
        }
    };
    view! {
        <header>
            <div class="brand">
                <span class="logo">"BV"</span>
                <div>
                    <h1>"BERTVision"</h1>
                    <p class="tagline">"A tiny AdapterPooler on every layer's hidden states, beside the BERT it reads"</p>
                </div>
            </div>
            <nav>
                <button id="tab-qa" class:active=move || tab.get() == Tab::Qa on:click=move |_| go(Tab::Qa)>
                    "Question answering"
                </button>
                <button id="tab-classify" class:active=move || tab.get() == Tab::Classify on:click=move |_| go(Tab::Classify)>
                    "Classification"
                </button>
                <button id="tab-compare" class:active=move || tab.get() == Tab::Compare on:click=move |_| go(Tab::Compare)>
                    "Comparison"
                </button>
            </nav>
        </header>
        <main>
            <div style:display=move || if tab.get() == Tab::Qa { "block" } else { "none" }>
                <QaPage/>
            </div>
            <div style:display=move || if tab.get() == Tab::Classify { "block" } else { "none" }>
                <ClassifyPage shown=Signal::derive(move || tab.get() == Tab::Classify)/>
            </div>
            <div style:display=move || if tab.get() == Tab::Compare { "block" } else { "none" }>
                <ComparePage/>
            </div>
        </main>
        <footer>"Burn 0.21 in WebAssembly · weights exported by " <code>"bertvision run"</code></footer>
    }
}

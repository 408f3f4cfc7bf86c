"""The README's Python examples, type-checked against the public API (`mypy tests/typing`); not run by pytest."""

import nas
import search_spaces

net = search_spaces.get("mlp")
data = nas.data.digits("flat")
nas.train_supernet(net, data, epochs=100, lr=1e-2)
result = nas.search(net, data, objectives=["accuracy:max", "params:min"], searcher="guided", budget=100)
print(result.table())
best = result.pick("params<=5000")
model = net.extract(best.config, data)

run = nas.run_spec("runs/demo.toml", budget=300)
run = nas.load_run("runs/demo")
nas.export(run, "knee", formats=["pt", "onnx"])
model = nas.load_model("runs/demo/export/knee")
nas.report(run)

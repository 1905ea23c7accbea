"""One process-wide LLJIT: LLVM IR text in, function addresses (or portable objects) out."""
import ctypes
import itertools
import threading

import llvmlite.binding as llvm

# LLVM's global context, the JIT and the target machines are shared: one lock serialises all use.
_lock = threading.RLock()
_engine = None                  # (host TargetMachine, LLJIT), built on first use
_object_machines = {}           # cpu name -> TargetMachine for exported objects
_library_names = itertools.count()


class JITModule:
    """Compiled functions of one module; the resource tracker keeps their code mapped."""

    def __init__(self, tracker, names, optimized_ir):
        self._tracker = tracker
        self.names = tuple(sorted(names))
        self.optimized_ir = optimized_ir

    def address(self, name: str) -> int:
        """Address of the defined function (or global) `name`."""
        if name not in self.names:
            raise KeyError(f"{name!r} is not defined in this module (defined: {', '.join(self.names)})")
        return self._tracker[name]


def host_cpu_name() -> str:
    _initialize()
    return llvm.get_host_cpu_name()


def host_features() -> str:
    _initialize()
    try:
        return llvm.get_host_cpu_features().flatten()
    except RuntimeError:        # not every platform reports features; the cpu name then implies them
        return ""


def compile_module(llvm_ir_text: str, symbols: dict[str, int] | None = None) -> JITModule:
    """Parse, verify, optimise (O3, vectorisers on, host CPU) and link; unresolved symbols raise RuntimeError."""
    with _lock:
        machine, lljit = _host_engine()
        module = _parse(llvm_ir_text, machine)
        _optimize(module, machine)
        _check_resolvable(module, symbols or {})
        exported = [g.name for g in itertools.chain(module.functions, module.global_variables)
                    if not g.is_declaration and g.linkage == llvm.Linkage.external]
        library = llvm.JITLibraryBuilder().add_ir(str(module)).add_current_process()
        for name, address in (symbols or {}).items():
            library.import_symbol(name, address)
        for name in exported:
            library.export_symbol(name)
        # Linking looks every export up, which materialises the code: a missing symbol raises here.
        tracker = library.link(lljit, f"symbackprop_{next(_library_names)}")
        return JITModule(tracker, exported, str(module))


def emit_object(ir_text: str, cpu: str = "x86-64-v3") -> bytes:
    """Optimise for `cpu` and return a position-independent ELF/Mach-O object for export."""
    with _lock:
        machine = _object_machine(cpu)
        module = _parse(ir_text, machine)
        _optimize(module, machine)
        return machine.emit_object(module)


def optimize_ir(ir_text: str, cpu: str | None = None) -> str:
    """The IR after our O3 pipeline for `cpu` (host when None): for tests and `explain`."""
    with _lock:
        machine = _host_engine()[0] if cpu is None else _object_machine(cpu)
        module = _parse(ir_text, machine)
        _optimize(module, machine)
        return str(module)


_initialized = False


def _initialize():
    global _initialized
    if not _initialized:
        # llvmlite 0.50 removed llvm.initialize(); only the native pieces are needed.
        llvm.initialize_native_target()
        llvm.initialize_native_asmprinter()
        llvm.initialize_native_asmparser()
        _initialized = True


def _host_engine():
    global _engine
    if _engine is None:
        _initialize()
        target = llvm.Target.from_default_triple()
        machine = target.create_target_machine(cpu=host_cpu_name(), features=host_features(), opt=3, jit=True)
        _engine = (machine, llvm.create_lljit_compiler(machine))
    return _engine


def _object_machine(cpu):
    if cpu not in _object_machines:
        _initialize()
        target = llvm.Target.from_default_triple()
        _object_machines[cpu] = target.create_target_machine(cpu=cpu, opt=3, reloc="pic", codemodel="default")
    return _object_machines[cpu]


def _parse(ir_text, machine):
    try:
        module = llvm.parse_assembly(str(ir_text))
        module.verify()
    except RuntimeError as error:
        raise ValueError(f"invalid LLVM IR: {error}") from None
    module.triple = machine.triple
    module.data_layout = str(machine.target_data)
    return module


def _check_resolvable(module, symbols):
    # LLJIT would also fail, but with a vaguer message and noise on stderr; say which names are missing.
    process = ctypes.CDLL(None)
    missing = [g.name for g in itertools.chain(module.functions, module.global_variables)
               if g.is_declaration and not g.name.startswith("llvm.")
               and g.name not in symbols and not hasattr(process, g.name)]
    if missing:
        raise RuntimeError(f"Symbols not found: {', '.join(sorted(missing))}")


def _optimize(module, machine):
    options = llvm.create_pipeline_tuning_options(speed_level=3)
    options.loop_vectorization = True
    options.slp_vectorization = True
    options.loop_interleaving = True
    # full unrolling of constant-trip loops quadrupled compile time (W5: 0.9 s -> 0.23 s) for no speed
    options.loop_unrolling = False
    builder = llvm.create_pass_builder(machine, options)
    builder.getModulePassManager().run(module, builder)

"""A definition's meaning: validated and compiled into a :class:`Plan`.

Every problem is reported with the JSON path of the definition where it is
(``steps[1].branches[0].when``): unknown step references (in ``depends_on`` and
in expressions), cycles, unreachable steps, bad expressions and templates, and
fields that do not belong to the kind of node they are on.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ymera.workflows.errors import DefinitionProblem, WorkflowInvalid
from ymera.workflows.expressions import (
    Expression,
    ExpressionError,
    Template,
    compile_expression,
    compile_template,
    truthy,
)
from ymera.workflows.schemas import (
    FailurePolicy,
    Join,
    Node,
    Strategy,
    TaskTemplate,
    WorkflowCreate,
)

MAX_NODES = 200
MAX_DEPTH = 8
STEP_FIELDS = ("task_type", "agent", "input", "retry", "timeout", "priority", "on_failure")
GROUP_FIELDS = ("strategy", "steps", "join", "quorum", "branches", "task", "agents", "decide")
FIELDS_OF: dict[Strategy, tuple[str, ...]] = {
    Strategy.SEQUENTIAL: ("steps",),
    Strategy.PIPELINE: ("steps",),
    Strategy.PARALLEL: ("steps", "join", "quorum"),
    Strategy.CONDITIONAL: ("branches",),
    Strategy.CONSENSUS: ("task", "agents", "decide"),
}


@dataclass(frozen=True)
class TaskSpec:
    """What a step's task is made of (its input still a template)."""

    task_type: str
    agent_type: str | None
    capabilities: tuple[str, ...]
    agent_name: str | None
    input: Template | None
    retry: dict[str, Any] | None
    timeout: float | None
    priority: int


@dataclass
class PlanBranch:
    name: str
    when: Expression | None
    children: list[PlanNode]


@dataclass
class PlanNode:
    id: str
    path: str
    parent: str | None
    depends_on: tuple[str, ...] = ()
    task: TaskSpec | None = None  # a step, or what a CONSENSUS asks
    fallback: TaskSpec | None = None
    strategy: Strategy | None = None
    children: list[PlanNode] = field(default_factory=list)
    branches: list[PlanBranch] = field(default_factory=list)
    join: Join = Join.ALL
    quorum: int = 0
    agents: int = 0
    decide_method: str = "majority"
    decide_field: Expression | None = None

    @property
    def is_step(self) -> bool:
        return self.strategy is None

    def all_children(self) -> list[PlanNode]:
        if self.strategy == Strategy.CONDITIONAL:
            return [c for b in self.branches for c in b.children]
        return list(self.children)

    def subtree(self) -> Iterator[PlanNode]:
        yield self
        for child in self.all_children():
            yield from child.subtree()


@dataclass(frozen=True)
class RowSpec:
    key: str
    kind: str  # step | group | vote | fallback
    parent_key: str | None


@dataclass
class Plan:
    roots: list[PlanNode]
    nodes: dict[str, PlanNode]
    failure_policy: FailurePolicy
    output: Template | None

    def rows(self) -> list[RowSpec]:
        """Every row a run of this plan has, parents before children."""
        rows: list[RowSpec] = []
        for root in self.roots:
            for node in root.subtree():
                rows.append(RowSpec(node.id, "step" if node.is_step else "group", node.parent))
                if node.fallback is not None:
                    rows.append(RowSpec(fallback_key(node.id), "fallback", node.id))
                if node.strategy == Strategy.CONSENSUS:
                    rows.extend(
                        RowSpec(vote_key(node.id, k), "vote", node.id)
                        for k in range(1, node.agents + 1)
                    )
        return rows

    def sinks(self) -> list[str]:
        """Top-level nodes no other top-level node depends on."""
        needed = {d for root in self.roots for d in root.depends_on}
        return [root.id for root in self.roots if root.id not in needed]


def fallback_key(node_id: str) -> str:
    return f"{node_id}.fallback"


def vote_key(node_id: str, k: int) -> str:
    return f"{node_id}.{k}"


# --- compiling ---------------------------------------------------------------------------


class _Compiler:
    def __init__(self, spec: WorkflowCreate) -> None:
        self.spec = spec
        self.problems: list[DefinitionProblem] = []
        self.nodes: dict[str, PlanNode] = {}
        self.count = 0
        # (path, referring node id or None for the run output, the refs) to check
        # once every node is known.
        self.refs: list[tuple[str, str | None, frozenset[str]]] = []

    def problem(self, path: str, message: str) -> None:
        self.problems.append(DefinitionProblem(path=path, message=message))

    # expressions and templates

    def expression(self, text: str, path: str, owner: str | None) -> Expression | None:
        try:
            compiled = compile_expression(text)
        except ExpressionError as exc:
            self.problem(path, f"bad expression: {exc.message}")
            return None
        self.refs.append((path, owner, compiled.refs))
        return compiled

    def template(self, value: Any, path: str, owner: str | None) -> Template | None:
        if value is None:
            return None
        try:
            compiled = compile_template(value)
        except ExpressionError as exc:
            self.problem(path, f"bad template: {exc.message}")
            return None
        self.refs.append((path, owner, compiled.refs))
        return compiled

    def input_template(self, value: Any, path: str, owner: str) -> Template | None:
        if isinstance(value, str):
            stripped = value.strip()
            if not (stripped.startswith("${") and stripped.endswith("}")):
                self.problem(
                    path,
                    "input must be an object, or a string holding one ${ expression } "
                    "whose value is an object",
                )
                return None
        return self.template(value, path, owner)

    def task_spec(self, t: TaskTemplate | Node, path: str, owner: str) -> TaskSpec:
        agent = t.agent
        retry = t.retry.model_dump() if t.retry is not None else None
        return TaskSpec(
            task_type=str(t.task_type),
            agent_type=agent.type.value if agent and agent.type else None,
            capabilities=tuple(agent.capabilities) if agent else (),
            agent_name=agent.name if agent else None,
            input=self.input_template(t.input, f"{path}.input", owner),
            retry=retry,
            timeout=t.timeout,
            priority=t.priority if t.priority is not None else 5,
        )

    # nodes

    def node(
        self, spec: Node, path: str, parent: str | None, depth: int, top: bool
    ) -> PlanNode | None:
        self.count += 1
        if self.count == MAX_NODES + 1:
            self.problem(path, f"a workflow has at most {MAX_NODES} steps and groups")
        if depth > MAX_DEPTH:
            self.problem(path, f"groups nest at most {MAX_DEPTH} deep")
            return None
        if spec.id in self.nodes:
            self.problem(f"{path}.id", f"duplicate id {spec.id!r}")
        if spec.depends_on and not top:
            self.problem(
                f"{path}.depends_on",
                "depends_on is for top-level steps; inside a group its strategy orders the steps",
            )
        node = PlanNode(
            id=spec.id, path=path, parent=parent, depends_on=tuple(spec.depends_on) if top else ()
        )
        self.nodes.setdefault(spec.id, node)
        if (spec.task_type is None) == (spec.strategy is None):
            self.problem(
                path,
                "a node is either a step (with task_type) or a group (with strategy), "
                "not both and not neither",
            )
            return node
        if spec.task_type is not None:
            for name in GROUP_FIELDS:
                if getattr(spec, name) is not None:
                    self.problem(f"{path}.{name}", f"{name} is for groups; this is a step")
            node.task = self.task_spec(spec, path, spec.id)
            if spec.on_failure is not None:
                node.fallback = self.task_spec(spec.on_failure, f"{path}.on_failure", spec.id)
            return node
        return self.group(spec, node, path, depth)

    def group(self, spec: Node, node: PlanNode, path: str, depth: int) -> PlanNode:
        strategy = spec.strategy
        assert strategy is not None
        node.strategy = strategy
        self.group_fields(spec, path, strategy)
        if strategy in (Strategy.SEQUENTIAL, Strategy.PIPELINE, Strategy.PARALLEL):
            self.steps(spec, node, path, depth, strategy)
        if strategy == Strategy.PARALLEL:
            self.join(spec, node, path)
        if strategy == Strategy.CONDITIONAL:
            self.conditional(spec, node, path, depth)
        if strategy == Strategy.CONSENSUS:
            self.consensus(spec, node, path)
        return node

    def group_fields(self, spec: Node, path: str, strategy: Strategy) -> None:
        """A group carries no step's fields, and only the fields of its strategy."""
        for name in STEP_FIELDS:
            if getattr(spec, name) is not None:
                self.problem(f"{path}.{name}", f"{name} is for steps; this is a group")
        allowed = FIELDS_OF[strategy]
        for name in GROUP_FIELDS:
            if name != "strategy" and name not in allowed and getattr(spec, name) is not None:
                self.problem(f"{path}.{name}", f"{name} does not apply to a {strategy} group")

    def steps(self, spec: Node, node: PlanNode, path: str, depth: int, strategy: Strategy) -> None:
        """The children of a SEQUENTIAL, PIPELINE or PARALLEL group."""
        if not spec.steps:
            self.problem(f"{path}.steps", f"a {strategy} group needs at least one step")
        for i, child in enumerate(spec.steps or []):
            compiled = self.node(child, f"{path}.steps[{i}]", spec.id, depth + 1, False)
            if compiled is not None:
                node.children.append(compiled)
            if strategy == Strategy.PIPELINE and child.strategy is not None:
                self.problem(
                    f"{path}.steps[{i}]",
                    "a PIPELINE's steps must be steps (each one's output is the next "
                    "one's input), not groups",
                )

    def join(self, spec: Node, node: PlanNode, path: str) -> None:
        """How a PARALLEL group ends: all, any, or a quorum of its steps."""
        node.join = spec.join or Join.ALL
        if node.join == Join.QUORUM:
            if spec.quorum is None:
                self.problem(f"{path}.quorum", "join=quorum needs quorum (how many)")
            elif spec.quorum > len(spec.steps or []):
                self.problem(
                    f"{path}.quorum",
                    f"quorum {spec.quorum} is more than the group's "
                    f"{len(spec.steps or [])} steps: it could never be met",
                )
            node.quorum = spec.quorum or 1
        elif spec.quorum is not None:
            self.problem(f"{path}.quorum", "quorum needs join=quorum")

    def conditional(self, spec: Node, node: PlanNode, path: str, depth: int) -> None:
        if not spec.branches:
            self.problem(f"{path}.branches", "a CONDITIONAL group needs at least one branch")
            return
        names: set[str] = set()
        decided: str | None = None  # a branch after which none can be taken
        for b, branch in enumerate(spec.branches):
            bpath = f"{path}.branches[{b}]"
            if branch.name in names:
                self.problem(f"{bpath}.name", f"duplicate branch name {branch.name!r}")
            names.add(branch.name)
            if decided is not None:
                self.problem(bpath, f"unreachable: branch {decided!r} before it is always taken")
            when = None
            if branch.when is not None:
                when = self.expression(branch.when, f"{bpath}.when", spec.id)
                if when is not None:
                    constant, value = when.constant
                    if constant and not truthy(value):
                        self.problem(f"{bpath}.when", "unreachable: the condition is never true")
                    elif constant:
                        decided = branch.name
            else:
                decided = branch.name
            compiled = PlanBranch(branch.name, when, [])
            for i, child in enumerate(branch.steps):
                child_node = self.node(child, f"{bpath}.steps[{i}]", spec.id, depth + 1, False)
                if child_node is not None:
                    compiled.children.append(child_node)
            node.branches.append(compiled)

    def consensus(self, spec: Node, node: PlanNode, path: str) -> None:
        if spec.task is None:
            self.problem(f"{path}.task", "a CONSENSUS group needs the task to ask (task)")
        else:
            node.task = self.task_spec(spec.task, f"{path}.task", spec.id)
        if spec.agents is None:
            self.problem(f"{path}.agents", "a CONSENSUS group needs agents (how many, 2..20)")
        node.agents = spec.agents or 2
        if spec.decide is None:
            self.problem(f"{path}.decide", "a CONSENSUS group needs decide (method and field)")
            return
        node.decide_method = spec.decide.method
        # The field reads a vote's output, not the run's context: no step references.
        try:
            node.decide_field = compile_expression(spec.decide.field)
        except ExpressionError as exc:
            self.problem(f"{path}.decide.field", f"bad expression: {exc.message}")

    # the graph

    def dependencies(self, roots: list[PlanNode]) -> None:
        top = {root.id: i for i, root in enumerate(roots)}
        for i, root in enumerate(roots):
            seen: set[str] = set()
            for j, dep in enumerate(root.depends_on):
                where = f"steps[{i}].depends_on[{j}]"
                if dep in seen:
                    self.problem(where, f"{dep!r} is listed twice")
                seen.add(dep)
                if dep == root.id:
                    self.problem(where, "a step cannot depend on itself")
                elif dep not in top:
                    if dep in self.nodes:
                        self.problem(
                            where,
                            f"{dep!r} is inside a group: depend on the top-level group instead",
                        )
                    else:
                        self.problem(where, f"unknown step {dep!r}")
        cycle = _find_cycle(roots, top)
        if cycle:
            first = roots[top[cycle[0]]]
            at = first.depends_on.index(cycle[1]) if cycle[1] in first.depends_on else 0
            self.problem(f"steps[{top[cycle[0]]}].depends_on[{at}]", "cycle: " + " -> ".join(cycle))

    def before(self, roots: list[PlanNode]) -> dict[str, set[str]]:
        """For every node, the nodes certain to have finished before it starts."""
        top = {root.id: root for root in roots}
        memo: dict[str, set[str]] = {}

        def ancestors(root: PlanNode, trail: tuple[str, ...]) -> set[str]:
            if root.id in memo:
                return memo[root.id]
            found: set[str] = set()
            for dep in root.depends_on:
                if dep in top and dep not in trail:
                    found |= {n.id for n in top[dep].subtree()}
                    found |= ancestors(top[dep], (*trail, dep))
            memo[root.id] = found
            return found

        result: dict[str, set[str]] = {}

        def walk(node: PlanNode, done: set[str]) -> None:
            result[node.id] = done
            if node.strategy in (Strategy.SEQUENTIAL, Strategy.PIPELINE):
                _walk_sequence(node.children, done)
            elif node.strategy == Strategy.PARALLEL:
                for child in node.children:
                    walk(child, done)
            elif node.strategy == Strategy.CONDITIONAL:
                for branch in node.branches:
                    _walk_sequence(branch.children, done)

        def _walk_sequence(children: list[PlanNode], done: set[str]) -> None:
            so_far = set(done)
            for child in children:
                walk(child, set(so_far))
                so_far |= {n.id for n in child.subtree()}

        for root in roots:
            walk(root, ancestors(root, (root.id,)))
        return result

    def check_refs(self, roots: list[PlanNode]) -> None:
        before = self.before(roots)
        for path, owner, refs in self.refs:
            for ref in sorted(refs):
                if ref not in self.nodes:
                    self.problem(path, f"unknown step {ref!r} (in outputs.{ref} / steps.{ref})")
                elif owner is not None and ref not in before.get(owner, set()):
                    self.problem(
                        path,
                        f"step {ref!r} is not certain to have finished when {owner!r} starts: "
                        "make it a dependency (depends_on) or an earlier step of the sequence",
                    )

    def compile(self) -> Plan:
        spec = self.spec
        roots: list[PlanNode] = []
        for i, node_spec in enumerate(spec.steps):
            node = self.node(node_spec, f"steps[{i}]", None, 1, True)
            if node is not None:
                roots.append(node)
        output = self.template(spec.output, "output", None) if spec.output is not None else None
        self.dependencies(roots)
        self.check_refs(roots)
        if self.problems:
            raise WorkflowInvalid(self.problems)
        return Plan(roots, self.nodes, spec.failure_policy, output)


def _find_cycle(roots: list[PlanNode], top: dict[str, int]) -> list[str] | None:
    graph = {root.id: [d for d in root.depends_on if d in top and d != root.id] for root in roots}
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in graph[node]:
            if state.get(dep) == 1:
                return [*stack[stack.index(dep) :], dep]
            if dep not in state and (found := visit(dep)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for root in roots:
        if root.id not in state and (found := visit(root.id)):
            return found
    return None


def compile_plan(spec: WorkflowCreate) -> Plan:
    """Validate and compile a definition; raises :class:`WorkflowInvalid`."""
    return _Compiler(spec).compile()


def compile_definition(definition: dict[str, Any]) -> Plan:
    """Compile a stored definition (already validated when it was created)."""
    return compile_plan(WorkflowCreate.model_validate(definition))

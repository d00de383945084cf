"""Tool use: `m.chat(messages, tools=[...])` shows the model its tools in its own chat format
(Mistral's [AVAILABLE_TOOLS] / [TOOL_CALLS] / [TOOL_RESULTS], Llama 3.1's JSON calls and
`ipython` results), runs the calls it makes and continues until it answers (docs/tools.md).

    import zoo
    m.chat(messages, tools=[zoo.tools.python])          # the Python interpreter, through zoo.sandbox
    m.chat(messages, tools=[get_weather], max_steps=4)  # plain functions: schema from signature + docstring
"""

from .formats import SYNTAXES, Syntax, ToolCallError, get_syntax
from .interpreter import python, python_tool
from .loop import ToolRun, ToolStepLimit, call_tool, chat_with_tools, run
from .schema import Tool, as_tool, function_schema, tool

__all__ = ["SYNTAXES", "Syntax", "Tool", "ToolCallError", "ToolRun", "ToolStepLimit", "as_tool", "call_tool",
           "chat_with_tools", "function_schema", "get_syntax", "python", "python_tool", "run", "tool"]
